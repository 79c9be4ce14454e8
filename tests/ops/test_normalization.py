"""Normalization: batch norm (nn.BatchNorm2d, native_batch_norm and its other entry points, train
and eval, running statistics), layer norm and group norm, forward and backward, bitwise equal to
CPU as device work.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.testing import assert_close

import torch_sunrise
from conftest import assert_module_same_as_cpu, assert_same_as_cpu, no_fallback, pending_while


# ---------------------------------------------------------------- batch norm


@pytest.mark.no_fallback
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


@pytest.mark.no_fallback
def test_native_batch_norm_statistics_match_cpu() -> None:
    x = torch.randn(4, 3, 5)
    for training in (True, False):
        rm, rv = torch.zeros(3), torch.ones(3)
        expected = torch.ops.aten.native_batch_norm(x, None, None, rm.clone(), rv.clone(), training, 0.1, 1e-5)
        got = torch.ops.aten.native_batch_norm(x.sunrise(), None, None, rm.sunrise(), rv.sunrise(), training, 0.1, 1e-5)
        for g, e in zip(got, expected):
            assert_same_as_cpu(g, e)


BATCH_NORM_FORMS = {
    "_native_batch_norm_legit": lambda b, t: torch.ops.aten._native_batch_norm_legit(
        t, b.weight, b.bias, b.running_mean, b.running_var, True, 0.1, 1e-5),
    "_native_batch_norm_legit eval": lambda b, t: torch.ops.aten._native_batch_norm_legit(
        t, b.weight, b.bias, b.running_mean, b.running_var, False, 0.1, 1e-5),
    "_native_batch_norm_legit.no_stats": lambda b, t: torch.ops.aten._native_batch_norm_legit.no_stats(
        t, b.weight, b.bias, True, 0.1, 1e-5),
    "_batch_norm_with_update": lambda b, t: torch.ops.aten._batch_norm_with_update(
        t, b.weight, b.bias, b.running_mean, b.running_var, 0.1, 1e-5),
}


@pytest.mark.no_fallback
@pytest.mark.parametrize("name", list(BATCH_NORM_FORMS))
def test_batch_norm_entry_points_match_cpu(name: str) -> None:
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    bn_s = copy.deepcopy(bn).sunrise()
    t = torch.randn(2, 3, 4, 4)
    t_s = t.sunrise().requires_grad_()
    t.requires_grad_()
    got, expected = BATCH_NORM_FORMS[name](bn_s, t_s), BATCH_NORM_FORMS[name](bn, t)
    for g, e in zip(got, expected):
        assert_same_as_cpu(g.detach(), e.detach())
    assert_same_as_cpu(bn_s.running_mean, bn.running_mean)
    assert_same_as_cpu(bn_s.running_var, bn.running_var)
    got[0].square().sum().backward()
    expected[0].square().sum().backward()
    assert_same_as_cpu(t_s.grad, t.grad)
    assert_same_as_cpu(bn_s.weight.grad, bn.weight.grad)
    assert torch_sunrise.fallback_stats() == {}


@pytest.mark.no_fallback
def test_batch_norm_is_queued_and_checks_at_the_call() -> None:
    bn = nn.BatchNorm2d(16).to("sunrise")
    x = torch.randn(8, 16, 32, 32, device="sunrise")
    assert pending_while(lambda: bn(x))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        torch.ops.aten.native_batch_norm(torch.randn(3, device="sunrise"), None, None, None, None, True, 0.1, 1e-5)


# ---------------------------------------------------------------- layer norm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_forward_backward_native(dtype, affine) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8, dtype=dtype)
    w, b = (torch.randn(8, dtype=dtype), torch.randn(8, dtype=dtype)) if affine else (None, None)
    grad = torch.randn(3, 5, 8, dtype=dtype)

    def run(device):
        xs = x.to(device).requires_grad_()
        ws = w.to(device).requires_grad_() if affine else None
        bs = b.to(device).requires_grad_() if affine else None
        out, mean, rstd = torch.native_layer_norm(xs, (8,), ws, bs, 1e-5)
        out.backward(grad.to(device))
        grads = [t.grad.cpu() for t in (xs, ws, bs) if t is not None]
        return [out.detach().cpu(), mean.cpu(), rstd.cpu()] + grads

    with no_fallback():
        got = run("sunrise")
    for g, e in zip(got, run("cpu")):
        assert g.dtype == e.dtype and g.shape == e.shape
        assert_close(g, e, rtol=0, atol=0)


def test_layer_norm_mixed_dtype_and_bad_shape() -> None:
    x = torch.randn(4, 6, dtype=torch.bfloat16)
    w, b = torch.randn(6), torch.randn(6)
    with no_fallback():
        got = torch.native_layer_norm(x.sunrise(), (6,), w.sunrise(), b.sunrise(), 1e-5)
    for g, e in zip(got, torch.native_layer_norm(x, (6,), w, b, 1e-5)):
        assert g.dtype == e.dtype
        assert_close(g.cpu(), e, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="normalized_shape"):
        torch.nn.functional.layer_norm(torch.randn(4, 6, device="sunrise"), (5,))


# ---------------------------------------------------------------- group norm


@pytest.mark.no_fallback
@pytest.mark.parametrize("dtype, param_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.float32),
                                                 (torch.bfloat16, torch.bfloat16)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_group_norm(dtype, param_dtype, channels_last) -> None:
    def make():
        x = torch.randn(2, 6, 5, 4, dtype=dtype)
        return x.to(memory_format=torch.channels_last) if channels_last else x

    # PyTorch's derivative of native_group_norm hands the backward kernel
    # channels-last tensors on the CPU only (contiguous ones on any other
    # device, CUDA included), so the CPU kernel sums in another order there.
    assert_module_same_as_cpu(lambda: nn.GroupNorm(3, 6).to(param_dtype), make, loss=lambda out: out.float().square().sum(),
                 exact_grads=not channels_last)
