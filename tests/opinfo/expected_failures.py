"""THE list of expected failures of tests/test_opinfo_device.py (PyTorch's OpInfos on sunrise).

Every entry is one root cause: the OpInfos it affects (full names: ``name`` or ``name.variant``),
the checks (``forward``, ``noncontiguous``, ``out``, ``inplace``, ``grad``, or ``ALL``), the dtypes
(names, or ``ALL``) and the reason, with its category:

  bug        a sunrise product bug (a fix makes the test pass: then delete the entry)
  tolerance  sunrise computes differently within what the dtype allows (a fix is a tolerance)
  by-design  sunrise legitimately behaves differently from the CPU (as CUDA does)

A listed test that fails is reported as an expected failure (xfail, with the entry's reason);
one that passes FAILS the run ("unexpectedly passed: delete the entry"), so that the list only
shrinks. Two exceptions, each marked on its entry: ``flaky=True`` (a race: the test may pass or
fail; it runs, and only a failure is reported as xfail) and ``crashes=True`` (the test would take
the process down: it is skipped, with the reason). Nothing else is skipped: the only other skips
are tests whose OpInfo cannot generate samples even on the CPU, and they say so.

The list must stay small: fix the product, or diagnose the difference, rather than add entries.
"""

from __future__ import annotations

import unittest
from dataclasses import dataclass

ALL = "*"
KINDS = ("forward", "noncontiguous", "out", "inplace", "grad")
CATEGORIES = ("bug", "tolerance", "by-design")
FORWARD = ("forward", "noncontiguous", "out", "inplace")  # every check that is not grad


@dataclass(frozen=True)
class XFail:
    ops: tuple            # OpInfo full names
    kinds: tuple | str    # checks, or ALL
    dtypes: tuple | str   # dtype names, or ALL
    category: str         # bug / tolerance / by-design
    reason: str
    flaky: bool = False
    crashes: bool = False

    def matches(self, op: str, kind: str, dtype: str) -> bool:
        return (op in self.ops and (self.kinds == ALL or kind in self.kinds)
                and (self.dtypes == ALL or dtype in self.dtypes))


EXPECTED_FAILURES: list[XFail] = [
    # ---------------------------------------------------------------- product bugs
    XFail(
        ops=("normal.in_place", "uniform", "randn", "rand_like", "randn_like"),
        kinds=ALL, dtypes=("complex32", "complex64", "complex128"), category="bug",
        reason="The sunrise RNG kernels (normal_, uniform_ in csrc/aten/SunriseRandomOps.cpp) reject complex "
               "dtypes ('\"normal_\" not implemented for ComplexFloat'); the CPU fills the real view "
               "(view_as_real) of a complex tensor. Repro: torch.empty(3, dtype=torch.complex64, "
               "device='sunrise').uniform_()  /  torch.randn(3, dtype=torch.complex64, device='sunrise')."),
    XFail(
        ops=("cholesky", "cholesky_inverse", "cholesky_solve", "linalg.cholesky", "linalg.cholesky_ex",
             "linalg.ldl_factor", "linalg.ldl_factor_ex", "linalg.ldl_solve", "linalg.lstsq",
             "linalg.lstsq.grad_oriented", "linalg.pinv.singular", "pca_lowrank", "svd_lowrank"),
        kinds=ALL, dtypes=("complex64", "complex128"), category="bug",
        reason="Same root cause as the complex RNG entry: these OpInfos build their complex samples with "
               "torch.randn / uniform_ on the device (random Hermitian / full-rank matrices), which raise on "
               "sunrise; the ops themselves are not reached."),
    XFail(
        ops=("addr",), kinds=("inplace",), dtypes=ALL, category="bug",
        reason="The boxed CPU fallback (HostCompute::in) makes a new CPU view per argument, so an in-place op "
               "implemented as its out= variant with out=self (addr_ -> addr.out(self, self, ...)) no longer "
               "sees out.is_same(self): the CPU kernel treats self as a resizable output and silently resizes "
               "it instead of raising. Repro: torch.ones(3, device='sunrise').addr_(torch.ones(3, "
               "device='sunrise'), torch.ones(3, device='sunrise')) returns a 3x3 tensor; CPU raises '2D "
               "tensor expected'. Fix: one CPU view per device TensorImpl in HostCompute::in."),
    XFail(
        ops=("conj_physical",), kinds=("inplace",), dtypes=("complex32", "complex64", "complex128"), category="bug",
        reason="conj_physical_ has a CompositeExplicitAutograd kernel that calls conj_physical_stub directly; "
               "the stub has no PrivateUse1 kernel ('DispatchStub: missing kernel for sunrise', an internal "
               "assert). Repro: torch.randn(3, dtype=torch.complex64).to('sunrise').conj_physical_(). Fix: "
               "register conj_physical_ for sunrise (fallback or native)."),
    XFail(
        ops=("svd",), kinds=("out",), dtypes=("complex64", "complex128"), category="bug",
        reason="torch.svd(A, out=(U, S, V)) for complex A reaches a DispatchStub without a PrivateUse1 kernel "
               "('DispatchStub: missing kernel for sunrise'); the functional form works. Repro: "
               "torch.svd(torch.randn(3, 3, dtype=torch.complex64).to('sunrise'), out=(torch.empty(0, "
               "dtype=torch.complex64, device='sunrise'), torch.empty(0, device='sunrise'), torch.empty(0, "
               "dtype=torch.complex64, device='sunrise')))."),
    XFail(
        ops=("mode",), kinds=("out",), dtypes=ALL, category="bug",
        reason="mode.values (out=) has a CompositeExplicitAutograd kernel that checks the device type itself "
               "('mode only supports CPU, CUDA and XPU device type, got: sunrise'); the functional torch.mode "
               "works through the fallback. Repro: torch.mode(x, out=(values, indices)) on sunrise. Fix: route "
               "mode.values to the CPU fallback, as addr/native_layer_norm are."),
    XFail(
        ops=("nn.functional.mse_loss", "nn.functional.smooth_l1_loss"), kinds=ALL, dtypes=ALL, category="bug",
        reason="The native structured kernels of mse_loss / smooth_l1_loss ignore the reduction: with "
               "reduction='mean' or 'sum' sunrise returns the elementwise tensor (scaled) instead of a 0-dim "
               "result (whose backward then fails on the shape). Their impl() computes into a TensorIterator "
               "temporary and then calls at::mean_out / at::sum_out into the output. Repro: "
               "torch.nn.functional.mse_loss(torch.randn(3, 4, device='sunrise'), torch.randn(3, 4, "
               "device='sunrise')).shape == (3, 4)."),
    XFail(
        ops=("sgn",), kinds=("grad",), dtypes=("float16", "bfloat16", "float32", "float64"), category="bug",
        reason="The derivative of sgn for real inputs is an efficient zero tensor: aten::_efficientzerotensor "
               "falls back to the CPU, whose result has no storage, and the fallback copies it to the device "
               "from a NULL pointer (AcceleratorError 'source pointer is NULL'). Repro: "
               "torch._efficientzerotensor((3,), device='sunrise')."),
    XFail(
        ops=("linalg.lu_solve",), kinds=ALL, dtypes=("complex64", "complex128"), category="bug",
        reason="Wrong results for complex inputs with left=False (ATen solves X A = B as "
               "lu_solve(LU, pivots, B.mH, adjoint=not adjoint).mH, on conjugate views), from the native "
               "structured linalg_lu_solve kernel; left=True and real dtypes agree. Repro: LU, piv = "
               "torch.linalg.lu_factor(A) for a complex 3x3 A; torch.linalg.lu_solve(LU, piv, B, left=False) "
               "differs between sunrise and CPU."),
    XFail(
        ops=("nn.functional.cosine_similarity", "nn.functional.multi_head_attention_forward", "baddbmm"),
        kinds=ALL, dtypes=ALL, category="bug", flaky=True,
        reason="A race: native structured kernels run meta() on the host, over CPU views of device memory, "
               "without waiting for the queued work that writes it. Some meta() functions touch data: "
               "baddbmm's copies self into the result (used by multi_head_attention_forward with an "
               "attn_mask); TensorIterator's type promotion casts on the host for an in-place op whose common "
               "dtype differs from self's (clamp_min_(float32 0-dim tensor) on float16, inside "
               "cosine_similarity). Results are stale or garbage unless SUNRISE_LAUNCH_BLOCKING=1. Repro: "
               "a = torch.full((3,), 6.75, dtype=torch.float16, device='sunrise'); "
               "a.add_(torch.full((3,), 0.5, device='sunrise')) gives 7.75, 8.25, ... in a loop; "
               "torch.baddbmm(z.clone(), x, y) on sunrise differs from CPU."),
    # ---------------------------------------------------------------- legitimately different
    XFail(
        ops=("to_sparse", "sparse.mm.reduce", "sparse.sampled_addmm"), kinds=ALL, dtypes=ALL,
        category="by-design",
        reason="Sparse layouts are not supported on sunrise (strided tensors only): ops producing sparse "
               "tensors raise a clear NotImplementedError ('Keep sparse work on the CPU')."),
    XFail(
        ops=("nn.functional.linear_cross_entropy.chunked", "nn.functional.linear_cross_entropy.chunked_none"),
        kinds=ALL, dtypes=("float16", "bfloat16"), category="by-design",
        reason="PyTorch resolves LinearCrossEntropyOptions(acc_policy='auto') per device type: 'accurate' "
               "(float accumulation) on cpu, 'compact' elsewhere, so a non-CPU device accumulates the chunked "
               "loss in the low-precision dtype, as CUDA does."),
]


def lookup(op: str, kind: str, dtype: str) -> XFail | None:
    for entry in EXPECTED_FAILURES:
        if entry.matches(op, kind, dtype):
            return entry
    return None


def apply(cls, ops, device_type: str = "sunrise") -> dict:
    """Wraps the instantiated tests of ``cls`` that an entry lists. Returns {test name: entry}."""
    marked = {}
    for op in ops:
        key = op.name + ("." + op.variant_test_name if op.variant_test_name else "")
        for kind in KINDS:
            prefix = f"test_{kind}_{op.formatted_name}_{device_type}_"
            for name in [n for n in vars(cls) if n.startswith(prefix)]:
                entry = lookup(key, kind, name[len(prefix):])
                if entry is not None:
                    setattr(cls, name, _expecting(getattr(cls, name), entry))
                    marked[name] = entry
    return marked


def _expecting(fn, entry: XFail):
    import functools

    import pytest

    what = f"expected failure ({entry.category}): {entry.reason}"

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        if entry.crashes:
            raise unittest.SkipTest(f"not run, it crashes the process; {what}")
        try:
            fn(self, *args, **kwargs)
        except unittest.SkipTest:
            raise
        except Exception as e:  # noqa: BLE001 - the listed failure
            pytest.xfail(f"{what} [{type(e).__name__}: {str(e).splitlines()[0][:300]}]")
        if not entry.flaky:
            raise AssertionError("unexpectedly passed: this test is listed in tests/opinfo/expected_failures.py; "
                                 "delete it from the entry (the list only shrinks). Entry: " + what)

    return wrapper
