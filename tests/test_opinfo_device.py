"""PyTorch's device-generic OpInfo tests, instantiated for the sunrise device.

``instantiate_device_type_tests(..., only_for="privateuse1")`` with PyTorch's PrivateUse1 test
base (which picks up the renamed backend: tests are named ``..._sunrise_<dtype>`` and get
``device="sunrise:0"``), and ``@ops`` over ``op_db`` for every dtype the op supports on CPU
(complex included). Six checks per (op, dtype), each comparing sunrise with CPU on every sample
(see tests/opinfo/checks.py): ``forward``, ``noncontiguous``, ``out`` (ops with out=),
``inplace`` (ops with an in-place variant), ``variants`` (ops with method, operator, alias or
in-place variants; float32 and complex64, as TestCommon) and ``grad`` (differentiable ops, their
backward dtypes).

Which ops run:
  default                  the representative subset QUICK_OPS of tests/opinfo/common.py, dtypes
                           float32 / bfloat16 / int64 / bool / complex64 (grad: float32, complex64)
  SUNRISE_FULL_OPINFO=1    the full suite, every OpInfo x every CPU dtype, run by
                           ``test_full_opinfo_suite`` through tests/opinfo/full_run.py in chunked
                           subprocesses (a crash in one op is recorded and the run goes on);
                           the default subset still runs in-process too
  SUNRISE_OPINFO_OPS=a,b   exactly these OpInfos (full names), every CPU dtype, in-process

Expected failures: tests/opinfo/expected_failures.py, the only list (each entry with its reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # `pytest tests/...` without the repository root on sys.path
    sys.path.insert(0, _ROOT)

from torch.testing._internal.common_device_type import OpDTypes, instantiate_device_type_tests, ops  # noqa: E402
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402
from torch.testing._internal.common_utils import TestCase  # noqa: E402

from tests.opinfo import checks, expected_failures  # noqa: E402

FULL = os.environ.get("SUNRISE_FULL_OPINFO") == "1"
EXPLICIT = os.environ.get("SUNRISE_OPINFO_OPS") or None
IN_CHUNK = os.environ.get("SUNRISE_OPINFO_CHUNK") == "1"  # set by tests/opinfo/full_run.py

# In-process: the explicit list (full-run chunks always pass one), else the representative subset.
OPS = [checks.stripped(op) for op in checks.select_ops(op_db, full=False, names=EXPLICIT)]
ALL_DTYPES = EXPLICIT is not None
FWD_DTYPES = None if ALL_DTYPES else checks.QUICK_DTYPES
GRAD_DTYPES = None if ALL_DTYPES else checks.QUICK_GRAD_DTYPES


class TestSunriseOpInfo(TestCase):
    """Sunrise against CPU, per OpInfo and dtype."""


def _add(kind: str, op_list: list, dtypes, allowed) -> None:
    if not op_list:  # @ops refuses an empty list (e.g. SUNRISE_OPINFO_OPS without out= ops)
        return

    @ops(op_list, dtypes=dtypes, allowed_dtypes=allowed)
    def test(self, device, dtype, op):
        checks.run_check(device, dtype, op, kind)

    test.__name__ = f"test_{kind}"
    setattr(TestSunriseOpInfo, f"test_{kind}", test)


_add("forward", OPS, OpDTypes.supported, FWD_DTYPES)
_add("noncontiguous", OPS, OpDTypes.supported, FWD_DTYPES)
_add("out", [op for op in OPS if op.supports_out], OpDTypes.supported, FWD_DTYPES)
_add("inplace", [op for op in OPS if op.inplace_variant is not None], OpDTypes.supported, FWD_DTYPES)
_add("variants", [op for op in OPS if op.method_variant or op.operator_variant or op.inplace_variant or op.aliases],
     OpDTypes.supported, checks.VARIANT_DTYPES)
_add("grad", [op for op in OPS if op.supports_autograd], OpDTypes.supported_backward, GRAD_DTYPES)

instantiate_device_type_tests(TestSunriseOpInfo, globals(), only_for="privateuse1")
MARKED = expected_failures.apply(TestSunriseOpInfoPRIVATEUSE1, OPS)  # noqa: F821 - made just above


def test_expected_failures_are_well_formed():
    """Every entry names real OpInfos, real checks and dtypes its ops support on CPU, a category and
    a reason; no test is listed twice."""
    by_key = {checks.op_key(op): op for op in op_db}
    seen = set()
    problems = []
    for e in expected_failures.EXPECTED_FAILURES:
        name = ",".join(e.ops)
        if not e.ops or isinstance(e.ops, str):
            problems.append(f"{name}: ops must be a tuple of OpInfo names")
            continue
        kinds = expected_failures.KINDS if e.kinds == expected_failures.ALL else e.kinds
        if not set(kinds) <= set(expected_failures.KINDS):
            problems.append(f"{name}: unknown checks {set(kinds) - set(expected_failures.KINDS)}")
        if e.category not in expected_failures.CATEGORIES:
            problems.append(f"{name}: category {e.category!r}")
        if len(e.reason.strip()) < 40:
            problems.append(f"{name}: the reason must say why")
        for key in e.ops:
            op = by_key.get(key)
            if op is None:
                problems.append(f"{key}: no such OpInfo")
                continue
            cpu = {str(d).replace("torch.", "") for d in op.supported_dtypes("cpu")}
            dtypes = cpu if e.dtypes == expected_failures.ALL else set(e.dtypes) & cpu
            if not dtypes:
                problems.append(f"{key}: none of {e.dtypes} is supported on CPU")
            for k in kinds:
                for d in dtypes:
                    if (key, k, d) in seen:
                        problems.append(f"{key} {k} {d}: listed twice")
                    seen.add((key, k, d))
    assert not problems, "\n".join(problems)


def _opinfo(name: str):
    return checks.stripped(next(op for op in op_db if checks.op_key(op) == name))


@pytest.mark.parametrize("kind", expected_failures.KINDS)
def test_checks_catch_wrong_results(monkeypatch, kind):
    """Each check fails when sunrise results are off by one (fault injection)."""
    monkeypatch.setenv(checks.INJECT_ENV, f"wrong:abs/{kind}/float32")
    with pytest.raises(AssertionError, match=f"{kind} abs .float32. sample 0"):
        checks.run_check("sunrise:0", torch.float32, _opinfo("abs"), kind)
    monkeypatch.delenv(checks.INJECT_ENV)
    checks.run_check("sunrise:0", torch.float32, _opinfo("abs"), kind)


def _with_op(name: str, fn):
    """The OpInfo ``name`` calling ``fn`` instead of its op (a product bug, acted out)."""
    op = _opinfo(name)
    op.op = fn
    return op


def test_out_check_requires_cpu_out_tensors_to_raise():
    def copies_anywhere(x, *, out=None):  # sunrise results copied into CPU out= tensors
        result = torch.abs(x)
        return result if out is None else out.resize_(result.shape).copy_(result)

    with pytest.raises(AssertionError, match="cpu out tensors for sunrise inputs were accepted"):
        checks.run_check("sunrise:0", torch.float32, _with_op("abs", copies_anywhere), "out")


def test_checks_require_errors_at_the_call_and_of_cpus_class():
    def index_error_late(x):  # CPU raises IndexError at the call; sunrise when it synchronizes
        return x.reshape(-1)[torch.tensor([1000], device=x.device)]

    with pytest.raises(AssertionError, match="only when synchronizing"):
        checks.run_check("sunrise:0", torch.float32, _with_op("abs", index_error_late), "forward")

    def other_class(x):
        raise (TypeError if x.device.type == "cpu" else RuntimeError)("refused")

    with pytest.raises(AssertionError, match="raised RuntimeError: refused, CPU TypeError: refused"):
        checks.run_check("sunrise:0", torch.float32, _with_op("abs", other_class), "forward")


def test_exact_copy_keeps_layout_sharing_and_autograd_views():
    base = torch.arange(24, dtype=torch.float32, device="sunrise").reshape(4, 6).requires_grad_()
    view = base.t()[1:, ::2]  # non-contiguous, offset, an autograd view of a leaf
    alias = base.detach()[0].expand(3, 6)  # shares storage, overlapping strides
    cplx = torch.randn(3, dtype=torch.complex64).to("sunrise").requires_grad_()
    with torch.no_grad():
        real = cplx.real[1:]  # another dtype, a view made without grad tracking (a leaf)
    copier = checks.ExactCopy("cpu")
    c_base, c_view, c_alias, c_dev, c_real = copier((base, view, alias, torch.device("sunrise:0"), real))
    assert c_dev == torch.device("cpu") and copier.on_device >= 4
    for d, c in ((base, c_base), (view, c_view), (alias, c_alias), (real, c_real)):
        assert c.device.type == "cpu" and c.stride() == d.stride() and c.storage_offset() == d.storage_offset()
        assert torch.equal(c.detach(), d.detach().cpu())
    assert c_base.untyped_storage().data_ptr() == c_alias.untyped_storage().data_ptr()
    assert c_view.grad_fn is not None and c_base.is_leaf  # gradients through the view reach the copied leaf
    assert copier((base,))[0] is c_base  # the same tensor object is copied once
    assert c_real.is_leaf and c_real.requires_grad and c_real._base is not None


def test_full_run_survives_crashes_and_hangs(tmp_path):
    """The chunked driver records a crashing and a hanging test and finishes the others."""
    from tests.opinfo import full_run

    env = dict(os.environ, SUNRISE_OPINFO_INJECT="crash:abs/forward/float32,hang:abs/out/int64")
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "tests.opinfo.full_run", "--ops", "abs", "--workdir",
                           str(tmp_path / "work"), "--json", str(out), "--timeout", "10", "--no-snapshot",
                           "--quiet"], cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.exists(), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    outcomes = {(t["kind"], t["dtype"]): t["outcome"] for t in result["tests"]}
    assert outcomes.pop(("forward", "float32")) == "crash"
    assert outcomes.pop(("out", "int64")) == "timeout"
    listing = next(o for o in result["listing"]["ops"] if o["op"] == "abs")
    assert len(outcomes) == full_run.tests_of(listing) - 2
    assert set(outcomes.values()) == {"passed"}, {k: v for k, v in outcomes.items() if v != "passed"}
    assert "SIGSEGV" in next(t["message"] for t in result["tests"] if t["outcome"] == "crash")
    summary = full_run.summarize(result)
    assert summary["process_crashes"] == 2 and summary["totals"]["crash"] == 1


@pytest.mark.skipif(not FULL or IN_CHUNK,
                    reason="the full OpInfo suite (every op x every CPU dtype, ~20k tests, about an hour "
                           "on one core) runs with SUNRISE_FULL_OPINFO=1")
def test_full_opinfo_suite():
    from tests.opinfo import full_run

    with tempfile.TemporaryDirectory(prefix="sunrise_opinfo_") as tmp:
        out = os.path.join(tmp, "results.json")
        cmd = [sys.executable, "-m", "tests.opinfo.full_run", "--json", out, "--quiet"]
        proc = subprocess.run(cmd, cwd=_ROOT, capture_output=True, text=True)
        assert os.path.exists(out), f"the full run wrote no results (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        with open(out) as f:
            result = json.load(f)
    summary = full_run.summarize(result)
    text = full_run.summary_text(result, summary)
    assert summary["totals"].get("crash", 0) == 0 and summary["totals"].get("timeout", 0) == 0, text
    assert summary["totals"].get("failed", 0) == 0, text
    assert summary["forward_agreement_pct"] >= 99.5, text
    assert summary["grad_float32_agreement_pct"] >= 99.0, text
