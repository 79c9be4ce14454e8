"""OpInfo agreement sweep: sunrise results must agree with CPU.

By default a fast representative subset (tests.opinfo.common.SWEEP_QUICK_OPS, about 60
OpInfos x float32/int64/bool/bfloat16) runs. SUNRISE_FULL_SWEEP=1 runs every OpInfo
in op_db as well (takes minutes). Both run in worker subprocesses, so a crashing op
is reported instead of taking pytest down.
"""

from __future__ import annotations

import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # `pytest tests/...` without the repository root on sys.path
    sys.path.insert(0, _ROOT)

from tests.opinfo import common, sweep  # noqa: E402

MIN_AGREEMENT_PCT = 95.0


def _check(result: dict) -> None:
    summary = sweep.summarize(result["records"], result["config"]["dtypes"])
    bad = sorted(
        f"{r['outcome']}: {r['op']} [{r['dtype']}]: {sweep.one_line(r.get('reason', ''), 200)}"
        for r in result["records"]
        if r["outcome"] in sweep.COUNTED and r["outcome"] != "agree"
    )
    detail = f"{summary['overall']} agreement {summary['agreement_pct']:.2f}%\n" + "\n".join(bad)
    assert summary["counted"] > 0, "the sweep ran nothing"
    assert summary["overall"]["crash"] == 0, "worker processes crashed:\n" + detail
    assert summary["agreement_pct"] >= MIN_AGREEMENT_PCT, detail


def test_opinfo_sweep_quick_subset():
    result = sweep.run_sweep(exact_ops=common.SWEEP_QUICK_OPS, limit_samples=4, timeout=60, workers=1,
                             progress=False)
    ran = {r["op"] for r in result["records"] if r["outcome"] != "skip"}
    assert len(ran) >= 40, f"only {len(ran)} OpInfos of the subset ran: {sorted(ran)}"
    _check(result)


def test_sweep_catches_crashes_hangs_and_wrong_results(monkeypatch):
    # Faults injected in the worker: the driver records them and goes on with the next op.
    # A corrupted sunrise result must be caught by the comparison.
    monkeypatch.setenv("SUNRISE_SWEEP_INJECT", "crash:abs,hang:neg,wrong:mul")
    result = sweep.run_sweep(dtypes=["float32"], ops_filter=["=abs", "=neg", "=mul", "=add"], timeout=10,
                             progress=False)
    outcomes = {r["op"]: r["outcome"] for r in result["records"]}
    assert outcomes == {"abs": "crash", "neg": "timeout", "mul": "mismatch", "add": "agree"}, result["records"]


@pytest.mark.skipif(os.environ.get("SUNRISE_FULL_SWEEP") != "1",
                    reason="the full op_db sweep (~2000 op/dtype pairs) is slow; set SUNRISE_FULL_SWEEP=1 to run it")
def test_opinfo_sweep_full():
    workers = int(os.environ.get("SUNRISE_SWEEP_WORKERS", "1"))
    result = sweep.run_sweep(limit_samples=4, timeout=60, workers=workers, progress=False)
    _check(result)
