"""THE list of expected failures of tests/test_opinfo_device.py (PyTorch's OpInfos on sunrise).

Every entry is one root cause: the OpInfos it affects (full names: ``name`` or ``name.variant``),
the checks (``forward``, ``noncontiguous``, ``out``, ``inplace``, ``variants``, ``grad``, or ``ALL``), the dtypes
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

from tests.opinfo.common import KINDS

ALL = "*"
CATEGORIES = ("bug", "tolerance", "by-design")
FORWARD = ("forward", "noncontiguous", "out", "inplace", "variants")  # every check but grad


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
