"""Autocast with CUDA's policy, and GradScaler with device-side kernels."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_sunrise


def test_amp_dtypes_and_availability() -> None:
    assert torch.amp.is_autocast_available("sunrise")
    assert torch.sunrise.get_amp_supported_dtype() == [torch.bfloat16, torch.float16]
    assert torch.sunrise.is_bf16_supported()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_policy_like_cuda(dtype: torch.dtype) -> None:
    x = torch.randn(8, 16)
    w = torch.randn(4, 16)
    xd, wd = x.sunrise(), w.sunrise()
    with torch.autocast("sunrise", dtype=dtype):
        lowered = {
            "linear": F.linear(xd, wd),
            "mm": xd @ wd.t(),
            "bmm": torch.bmm(xd[None], wd.t()[None]),
            "addmm": torch.addmm(torch.zeros(8, 4, device="sunrise"), xd, wd.t()),
        }
        y = F.linear(xd, wd)
        fp32 = {
            "softmax": torch.softmax(y, -1),
            "log_softmax": torch.log_softmax(y, -1),
            "exp": torch.exp(y),
            "layer_norm": F.layer_norm(y, (4,)),
            "sum": y.sum(),
            "mse_loss": F.mse_loss(y, torch.zeros_like(y)),
        }
        promoted = torch.addcmul(torch.zeros(8, 4, device="sunrise"), y, y)  # float32 and lower -> float32
    for name, t in lowered.items():
        assert t.dtype == dtype, name
        # Values: CPU computing in the same low precision.
        ref = {"linear": F.linear(x.to(dtype), w.to(dtype)), "mm": x.to(dtype) @ w.t().to(dtype),
               "bmm": torch.bmm(x.to(dtype)[None], w.t().to(dtype)[None]),
               "addmm": torch.addmm(torch.zeros(8, 4, dtype=dtype), x.to(dtype), w.t().to(dtype))}[name]
        assert_close(t.cpu(), ref)
    for name, t in fp32.items():
        assert t.dtype == torch.float32, name
    assert promoted.dtype == torch.float32
    # Outside the region nothing is cast.
    assert F.linear(xd, wd).dtype == torch.float32


def test_autocast_leaves_other_ops_alone_and_nests() -> None:
    x = torch.randn(4, 4, device="sunrise")
    with torch.autocast("sunrise", dtype=torch.bfloat16):
        assert torch.relu(x).dtype == torch.float32  # not listed: unchanged
        with torch.autocast("sunrise", enabled=False):
            assert (x @ x).dtype == torch.float32
        assert (x @ x).dtype == torch.bfloat16
        r = torch.randn(3, device="sunrise")  # random ops pass through autocast
        assert r.dtype == torch.float32


def test_binary_cross_entropy_is_refused_under_autocast() -> None:
    p = torch.rand(4, device="sunrise")
    with torch.autocast("sunrise", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError, match="with_logits"):
            F.binary_cross_entropy(p, torch.ones(4, device="sunrise"))


def _train(model: torch.nn.Module, device: str, autocast: bool, inject_inf_at: int = -1):
    m = copy.deepcopy(model).to(device)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**16, growth_interval=2)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(32, 16, generator=g).to(device)
    ys = torch.randint(0, 4, (32,), generator=g).to(device)
    scales = []
    for step in range(6):
        opt.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(m(xs), ys)
        scaler.scale(loss).backward()
        if step == inject_inf_at:
            m[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return [p.detach().cpu() for p in m.parameters()], scales


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def test_grad_scaler_matches_cpu_and_runs_on_device() -> None:
    torch_sunrise.reset_fallback_stats()
    model = _model()
    cpu_params, cpu_scales = _train(model, "cpu", autocast=False, inject_inf_at=2)
    dev_params, dev_scales = _train(model, "sunrise", autocast=False, inject_inf_at=2)
    assert dev_scales == cpu_scales  # growth, and backoff after the injected inf
    for a, b in zip(dev_params, cpu_params):
        assert_close(a, b)
    stats = torch_sunrise.fallback_stats()
    assert "aten::_amp_update_scale_" not in stats
    assert "aten::_amp_foreach_non_finite_check_and_unscale_" not in stats


def test_amp_training_loop_tracks_cpu() -> None:
    # CPU's autocast policy differs from CUDA's (which sunrise follows), so the
    # comparison allows bfloat16-level differences.
    model = _model()
    cpu_params, _ = _train(model, "cpu", autocast=True)
    dev_params, _ = _train(model, "sunrise", autocast=True)
    for a, b in zip(dev_params, cpu_params):
        assert_close(a, b, atol=5e-3, rtol=5e-2)


def test_unscale_is_asynchronous_until_found_inf_is_read() -> None:
    grads = [torch.full((1000,), 2.0, device="sunrise") for _ in range(3)]
    found_inf = torch.zeros(1, device="sunrise")
    inv_scale = torch.full((1,), 0.5, device="sunrise")
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
    for g in grads:
        assert_close(g.cpu(), torch.ones(1000))
    assert found_inf.item() == 0.0
    grads[1][5] = float("nan")
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
    assert found_inf.item() == 1.0
