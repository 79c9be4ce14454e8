"""Sunrise supports exactly CPU's dtypes, per OpInfo, forward and backward.

PyTorch's ``TestCommon.test_dtypes`` procedure asked of both devices with the same samples
(``tests/opinfo/checks.py``, ``supported_dtypes``): a dtype is supported when every sample runs
(and, backward, differentiates) without raising. Where both raise, sunrise raises CPU's exception
class, at the call. Default: the representative subset ``QUICK_OPS``;
``SUNRISE_FULL_DTYPES=1``: every OpInfo of ``op_db``.
"""

from __future__ import annotations

import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

from tests.opinfo import checks  # noqa: E402

FULL = os.environ.get("SUNRISE_FULL_DTYPES") == "1"
# Sparse layouts are not a sunrise feature (README, "What works"): every dtype fails there.
BY_DESIGN = {"to_sparse", "sparse.sampled_addmm", "sparse.mm.reduce"}

OPS = [op for op in checks.select_ops(op_db, full=FULL, names=None) if checks.op_key(op) not in BY_DESIGN]


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("op", OPS, ids=checks.op_key)
def test_supported_dtypes_are_cpus(op, backward: bool) -> None:
    if backward and not op.supports_autograd:
        pytest.skip("not differentiable")
    cpu, sunrise, unlike = checks.supported_dtypes(op, backward)
    assert sunrise == cpu, f"CPU only: {sorted(set(cpu) - set(sunrise))}, sunrise only: {sorted(set(sunrise) - set(cpu))}"
    assert not unlike, "errors unlike CPU's: " + "; ".join(unlike[:5])
