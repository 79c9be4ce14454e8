"""Convolution, pooling and scaled dot-product attention as device work.

Convolution (1d/2d/3d, transposed, grouped, channels_last) and SDPA run CPU eager's own kernels on
the device (SDPA: CPU eager's choice between its flash kernel and the math path), so results,
gradients, dtypes and strides equal CPU's bit for bit, and a launch returns before the device ran
it. Plus adaptive average pooling, and small models of these layers.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_sunrise
from conftest import assert_module_same_as_cpu, assert_same_as_cpu, pending_while


# --------------------------------------------------------------- convolution


CONV_CASES = [
    # (dims, transposed, kwargs, input channels_last)
    (2, False, dict(stride=1, padding=1), False),
    (2, False, dict(stride=2, padding=0, dilation=2), False),
    (2, False, dict(stride=1, padding=1, groups=2), False),
    (2, False, dict(stride=1, padding=1), True),
    (1, False, dict(stride=2, padding=1), False),
    (3, False, dict(stride=1, padding=1), False),
    (2, True, dict(stride=2, padding=1, output_padding=1), False),
    (1, True, dict(stride=2, padding=0), False),
]


def _conv(dims: int, transposed: bool, groups: int, dtype: torch.dtype):
    cls = {(1, False): nn.Conv1d, (2, False): nn.Conv2d, (3, False): nn.Conv3d,
           (1, True): nn.ConvTranspose1d, (2, True): nn.ConvTranspose2d}[(dims, transposed)]
    return cls


@pytest.mark.no_fallback
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dims, transposed, kwargs, channels_last", CONV_CASES)
def test_convolution_forward_backward_bitwise(dims, transposed, kwargs, channels_last, dtype) -> None:
    cls = _conv(dims, transposed, kwargs.get("groups", 1), dtype)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    def build() -> nn.Module:
        return cls(4, 6, 3, **kwargs).to(dtype).to(memory_format=layout)

    assert_module_same_as_cpu(build, lambda: torch.randn(2, 4, *([7] * dims), dtype=dtype).to(memory_format=layout),
                              loss=lambda out: out.float().square().sum())


@pytest.mark.no_fallback
def test_convolution_without_bias_and_only_some_gradients() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, bias=False)
    conv_s = copy.deepcopy(conv).to("sunrise")
    x = torch.randn(2, 3, 9, 9)
    conv.weight.requires_grad_(False)
    conv_s.weight.requires_grad_(False)
    xc, xs = x.clone().requires_grad_(), x.sunrise().requires_grad_()
    conv(xc).square().sum().backward()
    conv_s(xs).square().sum().backward()
    assert_same_as_cpu(xs.grad, xc.grad)


@pytest.mark.no_fallback
def test_convolution_is_queued_not_run_on_the_host() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1).to("sunrise")
    x = torch.randn(4, 8, 32, 32, device="sunrise")
    assert pending_while(lambda: conv(x))


@pytest.mark.no_fallback
def test_convolution_shape_errors_raise_at_the_call() -> None:
    conv = nn.Conv2d(3, 4, 3).to("sunrise")
    with pytest.raises(RuntimeError, match="expected input"):
        conv(torch.randn(1, 5, 8, 8, device="sunrise"))


@pytest.mark.parametrize(
    "layer,shape",
    [
        pytest.param(lambda: torch.nn.Conv1d(3, 4, 3), (2, 3, 8), id="conv1d"),
        pytest.param(lambda: torch.nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6), id="conv2d"),
        pytest.param(lambda: torch.nn.ConvTranspose2d(3, 4, 3), (2, 3, 6, 6), id="conv_transpose2d"),
    ],
)
def test_convolution_layers(layer, shape) -> None:
    torch.manual_seed(0)
    m = layer()
    md = layer()
    md.load_state_dict(m.state_dict())
    md.sunrise()
    x = torch.randn(shape)
    assert_same_as_cpu(md(x.sunrise()), m(x))


# ------------------------------------------------------------------- pooling


@pytest.mark.no_fallback
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(3, 3), (1, 5), (7, 7)])
def test_adaptive_avg_pool2d(size, channels_last) -> None:
    def make():
        x = torch.randn(2, 3, 9, 9)
        return x.to(memory_format=torch.channels_last) if channels_last else x

    assert_module_same_as_cpu(lambda: nn.AdaptiveAvgPool2d(size), make)


@pytest.mark.no_fallback
def test_small_cnn_trains_like_cpu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, stride=2), nn.BatchNorm2d(8), nn.GELU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    model_s = copy.deepcopy(model).to("sunrise")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_s = torch.optim.SGD(model_s.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    for _ in range(3):
        for m, o, xx, yy in ((model, opt, x, y), (model_s, opt_s, x.sunrise(), y.sunrise())):
            o.zero_grad()
            F.cross_entropy(m(xx), yy).backward()
            o.step()
    for p, p_s in zip(model.state_dict().values(), model_s.state_dict().values()):
        torch.testing.assert_close(p_s.cpu(), p, rtol=0, atol=0)


# ----------------------------------------------------------------- attention


def _qkv(dtype, layout: str, heads: int = 4, q_len: int = 16, kv_len: int = 16):
    torch.manual_seed(0)
    if layout == "split":  # GPT-2 style: one projection, split and transposed
        qkv = torch.randn(2, q_len, 3 * heads * 32, dtype=dtype)
        return [t.view(2, q_len, heads, 32).transpose(1, 2) for t in qkv.split(heads * 32, dim=-1)]
    return [torch.randn(2, heads, n, 32, dtype=dtype) for n in (q_len, kv_len, kv_len)]


@pytest.mark.no_fallback
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "layout, kwargs",
    [("contiguous", dict(is_causal=True)), ("contiguous", dict()), ("split", dict(is_causal=True)),
     ("contiguous", dict(scale=0.3)), ("mask", dict()), ("bool_mask", dict())],
)
def test_sdpa_forward_backward_bitwise(dtype, layout, kwargs) -> None:
    q, k, v = _qkv(dtype, "split" if layout == "split" else "contiguous", kv_len=24 if layout == "mask" else 16)
    if layout == "mask":
        kwargs = dict(attn_mask=torch.randn(16, 24, dtype=dtype))
    if layout == "bool_mask":
        kwargs = dict(attn_mask=torch.rand(16, 16) > 0.3)
    cpu = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    dev = [t.detach().sunrise().requires_grad_() for t in (q, k, v)]
    kw_s = {n: (a.sunrise() if isinstance(a, torch.Tensor) else a) for n, a in kwargs.items()}
    out_c = F.scaled_dot_product_attention(*cpu, **kwargs)
    out_s = F.scaled_dot_product_attention(*dev, **kw_s)
    assert_same_as_cpu(out_s, out_c.detach())
    grad = torch.randn_like(out_c)
    out_c.backward(grad)
    out_s.backward(grad.sunrise())
    for c, s in zip(cpu, dev):
        assert_same_as_cpu(s.grad, c.grad)
    assert torch_sunrise.fallback_stats() == {}


@pytest.mark.no_fallback
def test_sdpa_uses_cpu_flash_kernel_and_is_queued() -> None:
    q, k, v = [t.sunrise() for t in _qkv(torch.float32, "contiguous", q_len=256, kv_len=256)]
    with torch.profiler.profile() as prof:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    names = [e.name for e in prof.events()]
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten::_scaled_dot_product_attention_math" not in names
    assert pending_while(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.no_fallback
def test_sdpa_with_dropout_takes_the_math_path_like_cpu() -> None:
    # CPU's flash kernel has no dropout: CPU eager, and so sunrise, use the math path.
    q, k, v = [t.sunrise() for t in _qkv(torch.float32, "contiguous")]
    with torch.profiler.profile() as prof:
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert "aten::_scaled_dot_product_attention_math" in [e.name for e in prof.events()]


@pytest.mark.no_fallback
def test_flash_kernel_argument_errors_raise_at_the_call() -> None:
    q = torch.randn(2, 4, 8, 32, device="sunrise")
    with pytest.raises(RuntimeError, match="same head size"):
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, torch.randn(2, 4, 8, 16, device="sunrise"))
    with pytest.raises(RuntimeError, match="same device"):
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q.cpu())


@pytest.mark.no_fallback
def test_sdpa_with_a_mask_that_requires_grad_takes_the_math_path_like_cpu() -> None:
    # The flash kernel has no gradient for the mask: CPU eager picks the math path then.
    q, k, v = _qkv(torch.float32, "contiguous")
    mask = torch.randn(16, 16)
    cpu = [t.clone().requires_grad_() for t in (q, k, v, mask)]
    dev = [t.sunrise().requires_grad_() for t in (q, k, v, mask)]
    out_c = F.scaled_dot_product_attention(*cpu[:3], attn_mask=cpu[3])
    out_s = F.scaled_dot_product_attention(*dev[:3], attn_mask=dev[3])
    torch.testing.assert_close(out_s.cpu(), out_c.detach())
    out_c.sum().backward()
    out_s.sum().backward()
    for c, s in zip(cpu, dev):
        torch.testing.assert_close(s.grad.cpu(), c.grad)


def test_scaled_dot_product_attention() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 8, generator=g) for _ in range(3))
    for kwargs in ({}, {"is_causal": True}):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
        actual = torch.nn.functional.scaled_dot_product_attention(q.sunrise(), k.sunrise(), v.sunrise(), **kwargs)
        assert_same_as_cpu(actual, expected)
