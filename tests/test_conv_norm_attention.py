"""Convolution, batch norm and scaled dot-product attention as device work.

Each runs CPU eager's own kernel on the device, so results, gradients, dtypes
and strides equal CPU's bit for bit, and a launch returns before the device ran it.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_sunrise
from conftest import assert_same_as_cpu


@pytest.fixture(autouse=True)
def _no_fallback(fallback_mode):
    """Any CPU fallback raises; the counters start empty."""
    fallback_mode("error")


def _pending_while(fn) -> bool:
    """Whether the stream still had work queued when fn() returned (it queued work behind a slow matmul chain)."""
    w = torch.randn(768, 768, device="sunrise")
    torch.sunrise.synchronize()
    for _ in range(6):
        w = w @ w / 768
    fn()
    pending = not torch.sunrise.current_stream().query()
    torch.sunrise.synchronize()
    return pending


# ----------------------------------------------------------------- convolution
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dims, transposed, kwargs, channels_last", CONV_CASES)
def test_convolution_forward_backward_bitwise(dims, transposed, kwargs, channels_last, dtype) -> None:
    torch.manual_seed(0)
    cls = _conv(dims, transposed, kwargs.get("groups", 1), dtype)
    conv = cls(4, 6, 3, **kwargs).to(dtype)
    x = torch.randn(2, 4, *([7] * dims), dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    conv_s = copy.deepcopy(conv).to("sunrise")
    xc, xs = x.clone().requires_grad_(), x.sunrise().requires_grad_()
    out_c, out_s = conv(xc), conv_s(xs)
    assert_same_as_cpu(out_s, out_c.detach())
    grad = torch.randn_like(out_c)
    out_c.backward(grad)
    out_s.backward(grad.sunrise())
    assert_same_as_cpu(xs.grad, xc.grad)
    assert_same_as_cpu(conv_s.weight.grad, conv.weight.grad)
    assert_same_as_cpu(conv_s.bias.grad, conv.bias.grad)
    assert torch_sunrise.fallback_stats() == {}


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


def test_convolution_is_queued_not_run_on_the_host() -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1).to("sunrise")
    x = torch.randn(4, 8, 32, 32, device="sunrise")
    assert _pending_while(lambda: conv(x))


def test_convolution_shape_errors_raise_at_the_call() -> None:
    conv = nn.Conv2d(3, 4, 3).to("sunrise")
    with pytest.raises(RuntimeError, match="expected input"):
        conv(torch.randn(1, 5, 8, 8, device="sunrise"))


# ------------------------------------------------------------------ batch norm
@pytest.mark.parametrize(
    "dtype, param_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                           (torch.bfloat16, torch.float32), (torch.float64, torch.float64)]
)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train_and_eval_bitwise(dtype, param_dtype, channels_last, affine) -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, affine=affine).to(param_dtype)
    bn_s = copy.deepcopy(bn).to("sunrise")
    x = torch.randn(4, 3, 5, 6).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    for step in range(2):  # running statistics carry over between steps
        xc, xs = x.clone().requires_grad_(), x.sunrise().requires_grad_()
        out_c, out_s = bn(xc), bn_s(xs)
        assert_same_as_cpu(out_s, out_c.detach())
        grad = torch.randn_like(out_c)
        out_c.backward(grad)
        out_s.backward(grad.sunrise())
        assert_same_as_cpu(xs.grad, xc.grad)
        if affine:
            assert_same_as_cpu(bn_s.weight.grad, bn.weight.grad)
            assert_same_as_cpu(bn_s.bias.grad, bn.bias.grad)
        assert_same_as_cpu(bn_s.running_mean, bn.running_mean)
        assert_same_as_cpu(bn_s.running_var, bn.running_var)
        x = x * 1.5 + step
    bn.eval(), bn_s.eval()
    with torch.no_grad():
        assert_same_as_cpu(bn_s(x.sunrise()), bn(x))
    assert torch_sunrise.fallback_stats() == {}


def test_native_batch_norm_statistics_match_cpu() -> None:
    x = torch.randn(4, 3, 5)
    for training in (True, False):
        rm, rv = torch.zeros(3), torch.ones(3)
        expected = torch.ops.aten.native_batch_norm(x, None, None, rm.clone(), rv.clone(), training, 0.1, 1e-5)
        got = torch.ops.aten.native_batch_norm(x.sunrise(), None, None, rm.sunrise(), rv.sunrise(), training, 0.1, 1e-5)
        for g, e in zip(got, expected):
            assert_same_as_cpu(g, e)


def test_batch_norm_is_queued_and_checks_at_the_call() -> None:
    bn = nn.BatchNorm2d(16).to("sunrise")
    x = torch.randn(8, 16, 32, 32, device="sunrise")
    assert _pending_while(lambda: bn(x))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        torch.ops.aten.native_batch_norm(torch.randn(3, device="sunrise"), None, None, None, None, True, 0.1, 1e-5)


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


# ------------------------------------------------------------------- attention
def _qkv(dtype, layout: str, heads: int = 4, q_len: int = 16, kv_len: int = 16):
    torch.manual_seed(0)
    if layout == "split":  # GPT-2 style: one projection, split and transposed
        qkv = torch.randn(2, q_len, 3 * heads * 32, dtype=dtype)
        return [t.view(2, q_len, heads, 32).transpose(1, 2) for t in qkv.split(heads * 32, dim=-1)]
    return [torch.randn(2, heads, n, 32, dtype=dtype) for n in (q_len, kv_len, kv_len)]


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


def test_sdpa_uses_cpu_flash_kernel_and_is_queued() -> None:
    q, k, v = [t.sunrise() for t in _qkv(torch.float32, "contiguous", q_len=256, kv_len=256)]
    with torch.profiler.profile() as prof:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    names = [e.name for e in prof.events()]
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten::_scaled_dot_product_attention_math" not in names
    assert _pending_while(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_sdpa_with_dropout_takes_the_math_path_like_cpu() -> None:
    # CPU's flash kernel has no dropout: CPU eager, and so sunrise, use the math path.
    q, k, v = [t.sunrise() for t in _qkv(torch.float32, "contiguous")]
    with torch.profiler.profile() as prof:
        F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert "aten::_scaled_dot_product_attention_math" in [e.name for e in prof.events()]


def test_flash_kernel_argument_errors_raise_at_the_call() -> None:
    q = torch.randn(2, 4, 8, 32, device="sunrise")
    with pytest.raises(RuntimeError, match="same head size"):
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, torch.randn(2, 4, 8, 16, device="sunrise"))
    with pytest.raises(RuntimeError, match="same device"):
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q.cpu())


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
