"""Ops that used to take the CPU fallback, now native: results, dtypes and strides equal CPU's, no fallback."""

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


_X, _Y = torch.randn(4, 6), torch.randn(4, 6)
_C = torch.randn(3, 4, dtype=torch.complex64)

CASES = {
    "rsub scalar": lambda x, y, c: 1 - x,
    "rsub tensor": lambda x, y, c: torch.rsub(x, y, alpha=2),
    "relu6": lambda x, y, c: F.relu6(x),
    "hardtanh": lambda x, y, c: F.hardtanh(x, -0.5, 0.5),
    "hardtanh_": lambda x, y, c: F.hardtanh(x.clone(), -0.25, 0.75, inplace=True),
    "view_as_real": lambda x, y, c: torch.view_as_real(c),
    "view_as_complex": lambda x, y, c: torch.view_as_complex(torch.view_as_real(c).clone()),
    "unfold": lambda x, y, c: x.unfold(1, 2, 2),
    "repeat": lambda x, y, c: x.repeat(2, 3),
    "logical_not": lambda x, y, c: torch.logical_not(x > 0),
    "logical_not_": lambda x, y, c: (x > 0).logical_not_(),
    "logical_and": lambda x, y, c: (x > 0).logical_and(y > 0),
    "logical_or broadcast": lambda x, y, c: torch.logical_or(x, y[0]),
    "logical_xor float": lambda x, y, c: torch.logical_xor(x, y),
    "logical_and out float": lambda x, y, c: torch.logical_and(x, y, out=torch.empty(0, device=x.device)),
    "dot": lambda x, y, c: torch.dot(x[0], y[0]),
    "vdot complex": lambda x, y, c: torch.vdot(c[0], c[1]),
    "flip": lambda x, y, c: torch.flip(x, [0, -1]),
    "flip transposed": lambda x, y, c: torch.flip(x.t(), [1]),
    "roll one dim": lambda x, y, c: torch.roll(x.t(), 1, 0),
    "roll two dims": lambda x, y, c: torch.roll(x.t(), (1, 2), (0, 1)),
    "roll flat": lambda x, y, c: torch.roll(x.t(), 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_cpu_natively(name: str) -> None:
    fn = CASES[name]
    assert_same_as_cpu(fn(_X.sunrise(), _Y.sunrise(), _C.sunrise()), fn(_X, _Y, _C))
    assert torch_sunrise.fallback_stats() == {}


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


def test_argument_errors_raise_at_the_call() -> None:
    xs = _X.sunrise()
    with pytest.raises(RuntimeError, match="1D tensors expected"):
        torch.dot(xs, xs)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.dot(xs[0], xs[0].double())
    with pytest.raises(RuntimeError, match="appears multiple times"):
        torch.flip(xs, [0, 0])
    with pytest.raises(RuntimeError, match="must align"):
        torch.roll(xs, (1, 2), (0,))
    with pytest.raises(IndexError, match="out of range"):
        torch.roll(xs, 1, 5)
    with pytest.raises(RuntimeError, match=r"output with shape \[4, 1\] doesn't match the broadcast shape \[4, 6\]"):
        xs[:, :1].logical_and_(xs)


def _grads_match(build, make_input, loss=lambda out: out.square().sum(), exact_grads: bool = True) -> None:
    """Module forward and backward on CPU and sunrise: outputs, input and parameter gradients equal."""
    torch.manual_seed(0)
    module = build()
    module_s = copy.deepcopy(module).sunrise()
    x = make_input()
    xc, xs = x.clone().requires_grad_(), x.sunrise().requires_grad_()
    out_c, out_s = module(xc), module_s(xs)
    assert_same_as_cpu(out_s.detach(), out_c.detach())
    loss(out_c).backward()
    loss(out_s).backward()
    check = assert_same_as_cpu if exact_grads else lambda got, expected: torch.testing.assert_close(got.cpu(), expected)
    check(xs.grad, xc.grad)
    for p_c, p_s in zip(module.parameters(), module_s.parameters()):
        check(p_s.grad, p_c.grad)
    assert torch_sunrise.fallback_stats() == {}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(3, 3), (1, 5), (7, 7)])
def test_adaptive_avg_pool2d(size, channels_last) -> None:
    def make():
        x = torch.randn(2, 3, 9, 9)
        return x.to(memory_format=torch.channels_last) if channels_last else x

    _grads_match(lambda: nn.AdaptiveAvgPool2d(size), make)


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
    _grads_match(lambda: nn.GroupNorm(3, 6).to(param_dtype), make, loss=lambda out: out.float().square().sum(),
                 exact_grads=not channels_last)


def test_hardswish_and_its_gradient() -> None:
    _grads_match(nn.Hardswish, lambda: torch.randn(3, 4, 5) * 4)
    x = torch.randn(2, 8) * 4
    xs = x.sunrise()
    F.hardswish(xs, inplace=True)
    assert_same_as_cpu(xs, F.hardswish(x))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_spatial_cross_entropy(reduction, weighted) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0, :3] = -100  # ignored
    weight = torch.rand(4) if weighted else None

    def run(device):
        x = logits.to(device).requires_grad_()
        w = weight.to(device) if weighted else None
        loss = F.cross_entropy(x, target.to(device), weight=w, reduction=reduction)
        loss.sum().backward()
        return loss.detach(), x.grad

    (loss_s, grad_s), (loss_c, grad_c) = run("sunrise"), run("cpu")
    assert_same_as_cpu(loss_s, loss_c)
    assert_same_as_cpu(grad_s, grad_c)
    assert torch_sunrise.fallback_stats() == {}
