"""Reductions (var/std, mode with out=) and losses (cross entropy over images, mse and smooth L1
with every reduction, out=), forward and backward.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_sunrise
from conftest import assert_same_as_cpu, no_fallback, run_on_both


# ---------------------------------------------------------------- reductions


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.complex64])
@pytest.mark.parametrize("dim, correction, keepdim", [(None, None, False), (1, 0, True), ((0, 2), 2, False)])
def test_var_std_native(dtype, dim, correction, keepdim) -> None:
    x = torch.randn(4, 5, 6, dtype=dtype)
    with no_fallback():
        for fn in (torch.var, torch.std):
            got = fn(x.sunrise(), dim, correction=correction, keepdim=keepdim)
            expected = fn(x, dim, correction=correction, keepdim=keepdim)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert_close(got.cpu(), expected, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="floating point and complex"):
        torch.var(torch.ones(3, dtype=torch.long, device="sunrise"))


@pytest.mark.opinfo_regression
def test_mode_out_matches_cpu():
    x = torch.randint(0, 3, (5, 6)).float()

    def mode_out(t):
        values = torch.empty(0, device=t.device)
        indices = torch.empty(0, dtype=torch.long, device=t.device)
        torch.mode(t, 1, out=(values, indices))
        return values, indices

    actual, expected = run_on_both(mode_out, x)
    assert_same_as_cpu(actual, expected)


# -------------------------------------------------------------------- losses


@pytest.mark.no_fallback
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


_LOSSES = {
    "mse_loss": torch.nn.functional.mse_loss,
    "smooth_l1_loss": lambda a, b, reduction: torch.nn.functional.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
}


@pytest.mark.opinfo_regression
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("loss", sorted(_LOSSES))
def test_loss_reduction_matches_cpu(loss, reduction):
    fn = _LOSSES[loss]
    a, b = torch.randn(3, 4), torch.randn(3, 4)

    def forward_backward(x, y):
        x = x.detach().requires_grad_()
        out = fn(x, y, reduction=reduction)
        out.backward(torch.ones_like(out))
        return out.detach(), x.grad

    actual, expected = run_on_both(forward_backward, a, b)
    assert_same_as_cpu(actual, expected)


@pytest.mark.opinfo_regression
@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
@pytest.mark.parametrize("out_shape", [(), (0,), (3, 4)])
def test_mse_loss_out_matches_cpu(out_shape):
    a, b = torch.randn(3, 4), torch.randn(3, 4)

    def mse_out(x, y):
        out = torch.empty(out_shape, device=x.device)
        torch._C._nn.mse_loss(x, y, 2, out=out)  # reduction=sum
        return out

    actual, expected = run_on_both(mse_out, a, b)
    assert_same_as_cpu(actual, expected)
