"""A pytest plugin for the chunked full OpInfo run (tests/opinfo/full_run.py).

Loaded with ``-p tests.opinfo.progress_plugin``. It appends one JSON line per event to the file
named by SUNRISE_OPINFO_PROGRESS, flushed at once, so that the driver knows which test was
running when a process died or hung:

  {"start": nodeid}                                   before a test runs
  {"report": nodeid, "outcome": ..., "message": ...}  its outcome (passed, failed, skipped, xfail)
  {"finish": nodeid}                                  after its teardown

Tests whose node ids are listed (one a line) in the file named by SUNRISE_OPINFO_DESELECT are
deselected: the driver restarts a chunk without the tests already done and the one that crashed.
"""

from __future__ import annotations

import json
import os
import time

_PROGRESS = os.environ.get("SUNRISE_OPINFO_PROGRESS")
_DESELECT = os.environ.get("SUNRISE_OPINFO_DESELECT")
_file = None


def _emit(**msg) -> None:
    global _file
    if not _PROGRESS:
        return
    if _file is None:
        _file = open(_PROGRESS, "a", buffering=1)
    msg["t"] = round(time.time(), 3)
    _file.write(json.dumps(msg) + "\n")
    _file.flush()


def pytest_collection_modifyitems(config, items):
    if not _DESELECT or not os.path.exists(_DESELECT):
        return
    with open(_DESELECT) as f:
        drop = {line.strip() for line in f if line.strip()}
    keep = [it for it in items if it.nodeid not in drop]
    gone = [it for it in items if it.nodeid in drop]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep


def pytest_collection_finish(session):
    _emit(collected=len(session.items))


def pytest_runtest_logstart(nodeid, location):
    _emit(start=nodeid)


def _message(report) -> str:
    if report.outcome == "skipped" and not hasattr(report, "wasxfail"):
        lr = report.longrepr
        if isinstance(lr, tuple) and len(lr) == 3:
            return str(lr[2])
    if hasattr(report, "wasxfail"):
        text = report.longreprtext or str(report.wasxfail)
    else:
        text = report.longreprtext or ""
    text = text.split("To execute this test, run the following")[0]  # PyTorch's repro hint
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")] or text.splitlines()[-6:]
    return "\n".join(ln[1:].strip() if ln.startswith("E ") else ln for ln in lines)[:3000]


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        if report.when != "call" and report.outcome == "skipped" and report.when == "teardown":
            return
        outcome = "xfail" if hasattr(report, "wasxfail") and report.outcome == "skipped" else report.outcome
        _emit(report=report.nodeid, when=report.when, outcome=outcome, message=_message(report),
              duration=round(report.duration, 3))


def pytest_runtest_logfinish(nodeid, location):
    _emit(finish=nodeid)
