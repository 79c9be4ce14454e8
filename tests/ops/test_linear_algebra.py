"""Linear algebra: matrix products bitwise equal to CPU eager at every size (serial and threaded),
addr_, baddbmm with self produced by queued work, svd / lu_solve / qr (out=, conjugate and empty
outputs).
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import assert_same_as_cpu, fallback_calls, run_on_both


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("m, k, n", [(32, 64, 64), (1, 512, 2048), (1, 512, 8000), (5, 17, 3), (128, 64, 64), (96, 256, 384)])
def test_matrix_products_are_bitwise_cpu_small_and_large(dtype, m, k, n) -> None:
    # Small products run on the device thread alone (SerialMathScope), larger
    # ones with the full team; both must give CPU eager's bits exactly.
    g = torch.Generator().manual_seed(m * k + n)
    a, b, c = (torch.randn(s, generator=g, dtype=dtype) for s in ((m, k), (k, n), (n,)))
    a3, b3 = torch.randn(3, m, k, generator=g, dtype=dtype), torch.randn(3, k, n, generator=g, dtype=dtype)
    cases = [
        lambda a, b, c, a3, b3: torch.mm(a, b),
        lambda a, b, c, a3, b3: torch.addmm(c, a, b, beta=0.5, alpha=2),
        lambda a, b, c, a3, b3: torch.nn.functional.linear(a, b.t(), c),
        lambda a, b, c, a3, b3: torch.bmm(a3, b3),
        lambda a, b, c, a3, b3: torch.baddbmm(c.expand(3, m, n), a3, b3),
        lambda a, b, c, a3, b3: torch.addmv(c, b.t(), a[0]),
    ]
    cpu_args = (a, b, c, a3, b3)
    dev_args = tuple(t.to("sunrise") for t in cpu_args)
    for fn in cases:
        assert torch.equal(fn(*dev_args).cpu(), fn(*cpu_args))
    assert fallback_calls("aten::") == 0, torch_sunrise.fallback_stats()


def _raises_as_cpu(fn, *cpu_args):
    with pytest.raises(RuntimeError) as cpu_error:
        fn(*cpu_args)
    with pytest.raises(RuntimeError) as dev_error:
        fn(*[a.to("sunrise") for a in cpu_args])
    assert str(cpu_error.value).splitlines()[0] == str(dev_error.value).splitlines()[0]


@pytest.mark.opinfo_regression
# One row times a large matrix: the device splits its columns between threads
# (split_matvec); each element must still be CPU eager's dot product, bit for bit,
# for both layouts of the matrix (nn.Linear's weight.t(), GPT-2's Conv1D weight).
@pytest.mark.parametrize("k, n", [(512, 50257), (512, 1536), (2048, 768), (768, 3001)])
@pytest.mark.parametrize("layout", ["linear", "conv1d"])
def test_one_row_products_split_by_columns_are_bitwise_cpu(k: int, n: int, layout: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, k)
    w = torch.randn(n, k) if layout == "linear" else torch.randn(k, n)
    bias = torch.randn(n)

    def products(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> list[torch.Tensor]:
        mat = w.t() if layout == "linear" else w
        out = torch.empty(1, n, device=x.device)
        inplace = bias.expand(1, n).clone()
        return [x @ mat, torch.addmm(bias, x, mat), torch.addmm(bias, x, mat, beta=0.5, alpha=2.0),
                torch.mm(x, mat, out=out), inplace.addmm_(x, mat),
                torch.nn.functional.linear(x, w, bias) if layout == "linear" else x @ mat + bias]

    assert_same_as_cpu(*run_on_both(products, x, w, bias))


def test_addr_inplace_matches_cpu():
    self_, v1, v2 = torch.randn(3, 4), torch.randn(3), torch.randn(4)
    actual, expected = run_on_both(lambda s, a, b: s.addr_(a, b, beta=0.5, alpha=2), self_, v1, v2)
    assert_same_as_cpu(actual, expected)


@pytest.mark.opinfo_regression
def test_addr_inplace_does_not_resize_self():
    # CPU raises (self must already have the outer product's shape); the fallback used to resize self.
    _raises_as_cpu(lambda s, a, b: s.addr_(a, b), torch.ones(3), torch.ones(3), torch.ones(3))


@pytest.mark.opinfo_regression
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
        actual, expected = run_on_both(run, x, y, big)
        assert_same_as_cpu(actual, expected)


@pytest.mark.opinfo_regression
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

    (u, s, v), (u_cpu, s_cpu, _) = run_on_both(svd_out, a)
    assert_same_as_cpu(s, s_cpu)
    assert u.shape == u_cpu.shape
    # Singular vectors are unique up to a phase: compare the reconstruction with the CPU input.
    u, s, v = u.cpu(), s.cpu(), v.cpu()
    assert_close(u @ torch.diag(s).to(dtype) @ v.mH, a, rtol=1e-4, atol=1e-4)


@pytest.mark.opinfo_regression
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.float32])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("adjoint", [False, True])
def test_lu_solve_matches_cpu(dtype, left, adjoint):
    a = torch.randn(2, 3, 3, dtype=dtype) + 3 * torch.eye(3, dtype=dtype)
    b = torch.randn(2, 3, 2, dtype=dtype) if left else torch.randn(2, 2, 3, dtype=dtype)
    lu, pivots = torch.linalg.lu_factor(a)
    actual, expected = run_on_both(
        lambda l, p, r: torch.linalg.lu_solve(l, p, r, left=left, adjoint=adjoint), lu, pivots, b)
    assert_same_as_cpu(actual, expected)
    out = torch.empty(0, dtype=dtype, device="sunrise")
    torch.linalg.lu_solve(lu.to("sunrise"), pivots.to("sunrise"), b.to("sunrise"), left=left, adjoint=adjoint, out=out)
    assert_same_as_cpu(out, expected)


@pytest.mark.opinfo_regression
@pytest.mark.parametrize("mode", ["reduced", "complete", "r"])
@pytest.mark.parametrize("shape", [(5, 0), (0, 5), (2, 0, 3)])
def test_qr_with_empty_outputs(mode: str, shape: tuple) -> None:
    # Q and R of a matrix without columns both have no bytes; CPU views of
    # them once shared one empty storage, which linalg_qr's CPU kernel took
    # for aliasing and failed an internal assert on the device thread.
    actual, expected = run_on_both(lambda a: torch.linalg.qr(a, mode=mode), torch.randn(shape))
    assert_same_as_cpu(actual, expected)
