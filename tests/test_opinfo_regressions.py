"""Regressions for product bugs found by PyTorch's OpInfo tests (tests/opinfo/expected_failures.py).

Each test reproduces one fixed entry and compares sunrise with the same computation on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise  # noqa: F401  (registers the device)

DEV = "sunrise"


def _on_both(fn, *cpu_args):
    """fn on copies of the CPU arguments, on the CPU and on sunrise; returns (cpu result, sunrise result on CPU)."""
    actual = fn(*[a.to(DEV) if isinstance(a, torch.Tensor) else a for a in cpu_args])
    expected = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in cpu_args])  # in-place safe
    return expected, _to_cpu(actual)


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.cpu()
    if isinstance(x, (tuple, list)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def _raises_as_cpu(fn, *cpu_args):
    with pytest.raises(RuntimeError) as cpu_error:
        fn(*cpu_args)
    with pytest.raises(RuntimeError) as dev_error:
        fn(*[a.to(DEV) for a in cpu_args])
    assert str(cpu_error.value).splitlines()[0] == str(dev_error.value).splitlines()[0]


# ------------------------------------------------------------------ addr_ (in-place through out=self)

def test_addr_inplace_matches_cpu():
    self_, v1, v2 = torch.randn(3, 4), torch.randn(3), torch.randn(4)
    expected, actual = _on_both(lambda s, a, b: s.addr_(a, b, beta=0.5, alpha=2), self_, v1, v2)
    assert_close(actual, expected)


def test_addr_inplace_does_not_resize_self():
    # CPU raises (self must already have the outer product's shape); the fallback used to resize self.
    _raises_as_cpu(lambda s, a, b: s.addr_(a, b), torch.ones(3), torch.ones(3), torch.ones(3))


# ------------------------------------------------------------------ mode out=

def test_mode_out_matches_cpu():
    x = torch.randint(0, 3, (5, 6)).float()

    def mode_out(t):
        values = torch.empty(0, device=t.device)
        indices = torch.empty(0, dtype=torch.long, device=t.device)
        torch.mode(t, 1, out=(values, indices))
        return values, indices

    expected, actual = _on_both(mode_out, x)
    assert_close(actual, expected)


# ------------------------------------------------------------------ conj_physical_, svd out=

@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.float32])
def test_conj_physical_inplace_matches_cpu(dtype):
    x = torch.randn(4, 3, dtype=dtype)
    expected, actual = _on_both(lambda t: t.conj_physical_(), x)
    assert_close(actual, expected)
    assert not actual.is_conj()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.float32])
def test_svd_out_matches_cpu(dtype):
    a = torch.randn(4, 3, dtype=dtype)
    real = torch.float32

    def svd_out(t):
        outs = (torch.empty(0, dtype=dtype, device=t.device), torch.empty(0, dtype=real, device=t.device),
                torch.empty(0, dtype=dtype, device=t.device))
        u, s, v = torch.svd(t, out=outs)
        assert u is outs[0] and s is outs[1] and v is outs[2]
        return u, s, v

    (u_cpu, s_cpu, _), (u, s, v) = _on_both(svd_out, a)
    assert_close(s, s_cpu)
    assert u.shape == u_cpu.shape
    # Singular vectors are unique up to a phase: compare the reconstruction with the CPU input.
    assert_close(u @ torch.diag(s).to(dtype) @ v.mH, a, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ _efficientzerotensor, sgn grad

def test_efficientzerotensor_is_a_device_zero_tensor():
    z = torch._efficientzerotensor((2, 3), dtype=torch.float32, device=DEV)
    z_cpu = torch._efficientzerotensor((2, 3), dtype=torch.float32)
    assert z.device.type == DEV and z._is_zerotensor()
    assert_close(z.cpu(), z_cpu.clone())
    assert_close((z + torch.ones(2, 3, device=DEV)).cpu(), z_cpu + torch.ones(2, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sgn_grad_matches_cpu(dtype):
    x = torch.randn(5, dtype=dtype)

    def grad(t):
        t = t.detach().requires_grad_()
        torch.sgn(t).sum().backward()
        return t.grad

    expected, actual = _on_both(grad, x)
    assert_close(actual, expected)


# ------------------------------------------------------------------ losses with a reduction

_LOSSES = {
    "mse_loss": torch.nn.functional.mse_loss,
    "smooth_l1_loss": lambda a, b, reduction: torch.nn.functional.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
}


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

    expected, actual = _on_both(forward_backward, a, b)
    assert actual[0].shape == expected[0].shape
    assert_close(actual, expected)


@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
@pytest.mark.parametrize("out_shape", [(), (0,), (3, 4)])
def test_mse_loss_out_matches_cpu(out_shape):
    a, b = torch.randn(3, 4), torch.randn(3, 4)

    def mse_out(x, y):
        out = torch.empty(out_shape, device=x.device)
        torch._C._nn.mse_loss(x, y, 2, out=out)  # reduction=sum
        return out

    expected, actual = _on_both(mse_out, a, b)
    assert actual.shape == expected.shape
    assert_close(actual, expected)


# ------------------------------------------------------------------ linalg.lu_solve (conjugate outputs)

@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.float32])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("adjoint", [False, True])
def test_lu_solve_matches_cpu(dtype, left, adjoint):
    a = torch.randn(2, 3, 3, dtype=dtype) + 3 * torch.eye(3, dtype=dtype)
    b = torch.randn(2, 3, 2, dtype=dtype) if left else torch.randn(2, 2, 3, dtype=dtype)
    lu, pivots = torch.linalg.lu_factor(a)
    expected, actual = _on_both(
        lambda l, p, r: torch.linalg.lu_solve(l, p, r, left=left, adjoint=adjoint), lu, pivots, b)
    assert_close(actual, expected)
    out = torch.empty(0, dtype=dtype, device=DEV)
    torch.linalg.lu_solve(lu.to(DEV), pivots.to(DEV), b.to(DEV), left=left, adjoint=adjoint, out=out)
    assert_close(out.cpu(), expected)


# ------------------------------------------------------------------ baddbmm: meta() copies self on the host

@pytest.mark.filterwarnings("ignore:An output with one or more elements was resized")
@pytest.mark.parametrize("variant", ["functional", "out", "out_empty", "out_grown", "inplace"])
def test_baddbmm_self_produced_by_queued_work(variant):
    # self comes out of a long queue of device work: meta() must not read it (nor write the result)
    # before that work has run.
    x, y = torch.randn(4, 8, 16), torch.randn(4, 16, 8)
    big = torch.randn(256, 256)

    def run(b1, b2, m):
        z = torch.zeros(4, 8, 8, device=b1.device)
        for _ in range(8):
            z = z + (m @ m).sum() * 0 + 1  # queued device work that produces self
        if variant == "functional":
            return torch.baddbmm(z, b1, b2, beta=0.5)
        if variant.startswith("out"):
            # out_grown: resizing queues a copy of the old bytes, which must not land after meta()'s copy.
            shape = {"out": (4, 8, 8), "out_empty": (0,), "out_grown": (2, 8, 8)}[variant]
            out = torch.ones(shape, device=b1.device)
            return torch.baddbmm(z, b1, b2, beta=0.5, out=out)
        return z.baddbmm_(b1, b2, beta=0.5)

    for _ in range(3):
        expected, actual = _on_both(run, x, y, big)
        assert_close(actual, expected)


# -------------------------------------------- outputs without elements are not aliases of each other
@pytest.mark.parametrize("mode", ["reduced", "complete", "r"])
@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (2, 0, 3)])
def test_qr_with_empty_outputs(mode: str, shape: tuple) -> None:
    # Q and R of a matrix without columns both have no bytes; CPU views of
    # them once shared one empty storage, which linalg_qr's CPU kernel took
    # for aliasing and failed an internal assert on the device thread.
    expected, actual = _on_both(lambda a: torch.linalg.qr(a, mode=mode), torch.randn(shape))
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        assert_close(a, e)
