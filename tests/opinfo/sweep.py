"""OpInfo agreement sweep: every OpInfo in PyTorch's ``op_db`` run on sunrise and on CPU.

A driver over the harness's forward check (``checks.agreement``, the same code as the ``forward``
check of tests/test_opinfo_device.py): for each OpInfo and each dtype of ``--dtypes`` (default
float32, int64, bool, bfloat16) that the OpInfo supports on CPU, its first ``--limit-samples``
sample inputs run on sunrise and on the CPU and are compared. Where test_opinfo_device.py is
pass/fail per test, the sweep gives one outcome per (op, dtype) and an agreement percentage:

  agree     every sample agrees (a sample for which CPU raises must raise on sunrise too)
  mismatch  some value / shape / dtype / device / aliasing differs, or sunrise did not raise
            where CPU did
  error     sunrise raised where CPU did not
  crash     the worker process died while running the op
  timeout   the op did not finish within ``--timeout`` seconds
  skip      not counted: dtype unsupported on CPU, or CPU could not generate samples

Agreement = agree / (agree + mismatch + error + crash + timeout). The report explains each pair
that does not agree with its entry in tests/opinfo/expected_failures.py (the one list).

Crash safety: ops run in worker subprocesses (``--workers``, default 1), which report each
(op, dtype) and the phase of each sample before running it; a worker that dies or hangs is
replaced and the sweep goes on with the next op. This module imports torch only in the workers.

Usage (from the repository root)::

    python -m tests.opinfo.sweep                              # the full sweep
    python -m tests.opinfo.sweep --ops add,mul --dtypes float32
    python -m tests.opinfo.sweep --max-ops 50 --json out.json
    python -m tests.opinfo.sweep --report docs/opinfo_sweep.md --json sweep.json
"""

from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import json
import os
import platform
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Iterable

from tests.opinfo import expected_failures
from tests.opinfo.common import (
    ROOT, SWEEP_DTYPES, SWEEP_INJECT_ENV, SWEEP_QUICK_OPS, crash_summary, exc_line, git_revision, injected,
    md_escape, one_line, signal_name, tail,
)

COUNTED = ("agree", "mismatch", "error", "crash", "timeout")
OUTCOMES = COUNTED + ("skip",)


# --------------------------------------------------------------------------- worker side


def device_healthy() -> str | None:
    import torch

    try:
        x = torch.arange(8, dtype=torch.float32).to("sunrise")
        y = (x * 2 + 1).cpu()
        torch.sunrise.synchronize()
        if not torch.equal(y, torch.arange(8, dtype=torch.float32) * 2 + 1):
            return "health check computed wrong values"
        return None
    except Exception as e:  # noqa: BLE001
        return exc_line(e)


def worker_main(task_file: str, fd: int, limit: int, threads: int) -> int:
    """Runs the (op, dtype) tasks of task_file, reporting on fd as JSON lines: {"ready"}, then per
    task {"start"}, {"phase", "sample"} as it goes and {"done": record}; {"finished"} at the end."""
    out = os.fdopen(fd, "w", buffering=1)

    def emit(**msg):
        out.write(json.dumps(msg) + "\n")
        out.flush()

    import faulthandler
    import warnings

    faulthandler.enable()  # a segfault leaves the Python stack in the worker's stderr
    warnings.filterwarnings("ignore")
    import torch
    from torch.testing._internal.common_methods_invocations import op_db

    from tests.opinfo import checks

    if threads > 0:
        torch.set_num_threads(threads)
    ops = {checks.op_key(op): op for op in op_db}
    with open(task_file) as f:
        tasks = json.load(f)
    emit(ready=True, pid=os.getpid())
    for key, dtype in tasks:
        emit(start=[key, dtype])
        t0 = time.monotonic()
        fault = injected(key, "forward", dtype, SWEEP_INJECT_ENV)
        checks.inject_fault(fault)
        try:
            rec = checks.agreement(ops[key], dtype, limit if limit > 0 else None, perturb=fault == "wrong",
                                   progress=emit)
        except Exception as e:  # noqa: BLE001
            rec = {"op": key, "dtype": dtype, "outcome": "error",
                   "reason": "sweep internal error: " + exc_line(e), "traceback": traceback.format_exc()}
        rec["seconds"] = round(time.monotonic() - t0, 3)
        sick = device_healthy()
        if sick:
            rec["note"] = f"device unhealthy after this op ({sick}); worker restarted"
        emit(done=rec)
        if sick:
            return 3
    emit(finished=True)
    return 0


# --------------------------------------------------------------------------- driver


@dataclass
class Slot:
    tasks: collections.deque
    proc: subprocess.Popen | None = None
    fd: int = -1
    buf: bytes = b""
    current: tuple | None = None
    sample: list | None = None
    phase: str = ""
    deadline: float = 0.0
    stderr_path: str = ""
    task_file: str = ""
    started_any: bool = False
    failures_without_progress: int = 0
    batch: list = field(default_factory=list)


def list_tasks(dtypes: Iterable[str], ops_filter: list[str] | None, max_ops: int | None,
               exact: Iterable[str] | None = None) -> tuple[list[tuple[str, str]], list[dict]]:
    """(tasks to run, skip records for dtypes unsupported on CPU). Imports torch in a
    subprocess so the driver stays torch-free."""
    code = (
        "import json, sys, warnings; warnings.filterwarnings('ignore')\n"
        "import torch\n"
        "from torch.testing._internal.common_methods_invocations import op_db\n"
        "res = []\n"
        "for op in op_db:\n"
        "    key = op.name + ('.' + op.variant_test_name if op.variant_test_name else '')\n"
        "    sd = op.supported_dtypes('cpu')\n"
        "    res.append([key, [str(d).replace('torch.', '') for d in sd]])\n"
        "json.dump(res, sys.stdout)\n"
    )
    env = dict(os.environ, SUNRISE_FALLBACK="silent")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    listing = json.loads(out.stdout)
    exact = set(exact) if exact else None
    selected = []
    for key, supported in listing:
        if exact is not None and key not in exact:
            continue
        if ops_filter and not any(
            (key == p[1:]) if p.startswith("=") else (p in key) for p in ops_filter
        ):
            continue
        selected.append((key, set(supported)))
    if max_ops:
        selected = selected[:max_ops]
    tasks, skips = [], []
    for key, supported in selected:
        for d in dtypes:
            if d in supported:
                tasks.append((key, d))
            else:
                skips.append({"op": key, "dtype": d, "outcome": "skip", "reason": "dtype not supported on CPU"})
    return tasks, skips


def worker_env(threads: int) -> dict:
    env = dict(os.environ)
    env["SUNRISE_FALLBACK"] = "silent"
    env.setdefault("SUNRISE_COMPUTE_UNITS", str(max(threads, 1)))
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_sweep(
    dtypes: Iterable[str] = SWEEP_DTYPES,
    ops_filter: list[str] | None = None,
    max_ops: int | None = None,
    limit_samples: int = 4,
    timeout: float = 60.0,
    workers: int = 1,
    threads: int = 1,
    exact_ops: Iterable[str] | None = None,
    tasks_per_worker: int = 400,
    progress: bool = True,
    log=sys.stderr,
) -> dict:
    """Run the sweep; returns {"records": [...], "seconds": float, "config": {...}}."""
    t_start = time.monotonic()
    dtypes = list(dtypes)
    tasks, records = list_tasks(dtypes, ops_filter, max_ops, exact_ops)
    total = len(tasks)
    workers = max(1, min(workers, 2))
    slots = [Slot(collections.deque(tasks[i::workers])) for i in range(workers)]
    env = worker_env(threads)
    tmpdir = tempfile.mkdtemp(prefix="sunrise_sweep_")
    sel = selectors.DefaultSelector()
    done_count = 0
    counts = collections.Counter()

    def note(rec):
        nonlocal done_count
        records.append(rec)
        done_count += 1
        counts[rec["outcome"]] += 1
        if progress and (rec["outcome"] not in ("agree", "skip") or done_count % 50 == 0 or done_count == total):
            el = time.monotonic() - t_start
            extra = ""
            if rec["outcome"] not in ("agree", "skip"):
                extra = f" {rec['outcome']}: {rec['op']} {rec['dtype']}: {one_line(rec.get('reason', ''), 160)}"
            print(f"[{done_count}/{total} {el:6.0f}s {dict(counts)}]{extra}", file=log, flush=True)

    def start(slot: Slot, n: int):
        slot.batch = list(itertools.islice(slot.tasks, tasks_per_worker))
        slot.task_file = os.path.join(tmpdir, f"tasks_{n}_{time.monotonic_ns()}.json")
        with open(slot.task_file, "w") as f:
            json.dump(slot.batch, f)
        slot.stderr_path = slot.task_file.replace(".json", ".stderr")
        r, w = os.pipe()
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", slot.task_file, "--fd", str(w),
               "--limit-samples", str(limit_samples), "--threads", str(threads)]
        with open(slot.stderr_path, "wb") as err:
            slot.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=(w,),
                                         env=env)
        os.close(w)
        slot.fd, slot.buf, slot.current = r, b"", None
        slot.deadline = time.monotonic() + 120.0  # startup: importing torch and op_db
        sel.register(r, selectors.EVENT_READ, slot)

    def stderr_tail(slot: Slot) -> str:
        return one_line(crash_summary(tail(slot.stderr_path, 4000)), 300)

    def stop(slot: Slot, why: str):
        """The worker died (why='crash') or hung (why='timeout')."""
        try:
            sel.unregister(slot.fd)
        except (KeyError, ValueError):
            pass
        os.close(slot.fd)
        if why == "timeout" and slot.proc.poll() is None:
            slot.proc.kill()
        rc = slot.proc.wait()
        if slot.current is not None:
            key, d = slot.current
            slot.tasks.popleft()
            if why == "timeout":
                reason = f"no result within {timeout:g} s (during the {slot.phase}); worker killed"
            else:
                died = f"killed by signal {-rc} ({signal_name(-rc)})" if rc < 0 else f"exited with {rc}"
                reason = f"worker {died} during the {slot.phase}: {stderr_tail(slot)}"
            rec = {"op": key, "dtype": d, "outcome": why, "reason": reason}
            if slot.sample:
                rec["reason"] = f"sample {slot.sample[0]}: {reason}"
                rec["sample"] = slot.sample[1]
            note(rec)
            slot.failures_without_progress = 0
        elif slot.tasks and slot.proc.returncode not in (0, 3):
            slot.failures_without_progress += 1
            if slot.failures_without_progress >= 3:
                msg = f"worker could not start (exit {rc}): {stderr_tail(slot)}"
                while slot.tasks:
                    key, d = slot.tasks.popleft()
                    note({"op": key, "dtype": d, "outcome": "error", "reason": "sweep: " + msg})
        slot.proc = None

    for n, slot in enumerate(slots):
        if slot.tasks:
            start(slot, n)
    while any(s.proc is not None for s in slots):
        now = time.monotonic()
        wait = max(0.05, min(s.deadline for s in slots if s.proc is not None) - now)
        for skey, _ in sel.select(timeout=min(wait, 5.0)):
            slot: Slot = skey.data
            chunk = os.read(slot.fd, 65536)
            if not chunk:
                stop(slot, "crash")
                continue
            slot.buf += chunk
            while b"\n" in slot.buf:
                line, slot.buf = slot.buf.split(b"\n", 1)
                msg = json.loads(line)
                if "phase" in msg:
                    slot.phase = msg["phase"]
                    if "sample" in msg:
                        slot.sample = msg["sample"]
                elif "start" in msg:
                    slot.current = tuple(msg["start"])
                    slot.sample, slot.phase = None, "sample generation"
                    slot.deadline = time.monotonic() + timeout
                elif "done" in msg:
                    rec = msg["done"]
                    if slot.tasks and tuple(slot.tasks[0]) == (rec["op"], rec["dtype"]):
                        slot.tasks.popleft()
                    slot.current = None
                    slot.failures_without_progress = 0
                    slot.deadline = time.monotonic() + timeout
                    note(rec)
                elif "ready" in msg:
                    slot.deadline = time.monotonic() + timeout
        now = time.monotonic()
        for n, slot in enumerate(slots):
            if slot.proc is None:
                continue
            if now > slot.deadline and slot.proc.poll() is None:
                stop(slot, "timeout")
        for n, slot in enumerate(slots):
            if slot.proc is None and slot.tasks:
                start(slot, n)
    sel.close()
    shutil.rmtree(tmpdir, ignore_errors=True)
    return {
        "records": records,
        "seconds": round(time.monotonic() - t_start, 1),
        "config": {"dtypes": dtypes, "limit_samples": limit_samples, "timeout": timeout, "workers": workers,
                   "threads": threads, "ops_filter": ops_filter, "max_ops": max_ops},
    }


# --------------------------------------------------------------------------- summary and report


def summarize(records: list[dict], dtypes: Iterable[str]) -> dict:
    def pct(c):
        n = sum(c[o] for o in COUNTED)
        return round(100.0 * c["agree"] / n, 2) if n else 100.0

    overall = collections.Counter(r["outcome"] for r in records)
    per_dtype = {d: collections.Counter(r["outcome"] for r in records if r["dtype"] == d) for d in dtypes}
    return {
        "overall": {o: overall[o] for o in OUTCOMES},
        "agreement_pct": pct(overall),
        "counted": sum(overall[o] for o in COUNTED),
        "per_dtype": {d: {**{o: c[o] for o in OUTCOMES}, "agreement_pct": pct(c)} for d, c in per_dtype.items()},
        "ops": len({r["op"] for r in records}),
    }


_NORMALIZE = [
    (re.compile(r"^sample \d+: "), ""),
    (re.compile(r"aten::[\w.]+"), "aten::<op>"),
    (re.compile(r"0x[0-9a-f]+"), "<addr>"),
    (re.compile(r"\d+(\.\d+)?(e[-+]?\d+)?"), "N"),
    (re.compile(r"\[[^\]]*\]"), "[...]"),
    (re.compile(r"\([^)]*\)"), "(...)"),
]


def diagnosis_of(rec: dict) -> str:
    """The reason of the entry of tests/opinfo/expected_failures.py that lists this pair's forward
    check, else ""."""
    entry = expected_failures.lookup(rec["op"], "forward", rec["dtype"])
    return f"({entry.category}) {entry.reason}" if entry else ""


def cause_of(rec: dict) -> str:
    reason = rec.get("reason", "")
    if rec["outcome"] == "mismatch":
        if "CPU raised" in reason:
            return "mismatch: CPU raised but sunrise did not"
        if "expected sunrise" in reason:
            return "mismatch: result tensor not on the sunrise device"
        if "aliasing of results" in reason:
            return "mismatch: results alias other sample tensors than on CPU"
        if "after the op, sample tensors" in reason:
            return "mismatch: sample tensors (in-place / out=) differ after the op"
        m = re.search(r"(The values for attribute '[^']+' do not match|Tensor-likes are not (close|equal)|"
                      r"Scalars are not (close|equal)|[A-Za-z ]+ mismatch)", reason)
        return "mismatch: " + (m.group(1) if m else one_line(reason, 80))
    if rec["outcome"] in ("crash", "timeout"):
        return rec["outcome"]
    text = reason
    for pat, rep in _NORMALIZE:
        text = pat.sub(rep, text)
    return f"{rec['outcome']}: " + one_line(text, 110)


def print_summary(result: dict, file=sys.stdout) -> dict:
    dtypes = result["config"]["dtypes"]
    s = summarize(result["records"], dtypes)
    o = s["overall"]
    print(f"\nOpInfo sweep: {s['ops']} OpInfos x {len(dtypes)} dtypes in {result['seconds']:.0f} s", file=file)
    print("overall: " + ", ".join(f"{k}={v}" for k, v in o.items()) +
          f"  -> agreement {s['agreement_pct']:.2f}% of {s['counted']}", file=file)
    for d, c in s["per_dtype"].items():
        print(f"  {d:9s} agreement {c['agreement_pct']:6.2f}%  " +
              ", ".join(f"{k}={c[k]}" for k in OUTCOMES), file=file)
    bad = sorted((r for r in result["records"] if r["outcome"] in COUNTED and r["outcome"] != "agree"),
                 key=lambda r: (r["op"], r["dtype"]))
    if bad:
        print(f"\nnot agreeing ({len(bad)}):", file=file)
        for r in bad:
            print(f"  {r['outcome']:8s} {r['op']} [{r['dtype']}]: {one_line(r.get('reason', ''), 200)}", file=file)
    return s


def samples_text(limit) -> str:
    return f"its first {limit}" if limit and limit > 0 else "all its"


def write_report(result: dict, path: str, command: str) -> None:
    import importlib.metadata as md

    dtypes = result["config"]["dtypes"]
    s = summarize(result["records"], dtypes)
    recs = result["records"]
    bad = sorted((r for r in recs if r["outcome"] in COUNTED and r["outcome"] != "agree"),
                 key=lambda r: (r["op"], dtypes.index(r["dtype"]) if r["dtype"] in dtypes else 0))
    try:
        torch_version = md.version("torch")
    except md.PackageNotFoundError:
        torch_version = "?"
    L = []
    L.append("# OpInfo agreement sweep: sunrise vs CPU\n")
    L.append("Generated by `tests/opinfo/sweep.py`; do not edit by hand. Regenerate with:\n")
    L.append(f"```\n{command}\n```\n")
    L.append(
        "Every OpInfo in `torch.testing._internal.common_methods_invocations.op_db`, for each dtype it "
        "supports on CPU, runs "
        f"{samples_text(result['config']['limit_samples'])} sample inputs "
        "through the forward check of `tests/opinfo/checks.py` (the one of `tests/test_opinfo_device.py`): "
        "samples generated on sunrise with a fixed per-op seed, copied exactly to the CPU (strides, offsets, "
        "storage sharing), run on both and compared with `torch.testing.assert_close(equal_nan=True)` (OpInfo "
        "tolerance overrides where present, else the default per-dtype tolerances; exact for integer and bool). "
        "Result tensors must be on the sunrise device and alias the sample tensors as on CPU, and the sample "
        "tensors must agree afterwards too (in-place ops, out=). A sample for which CPU raises must raise on "
        "sunrise as well. Random ops and ops returning uninitialized memory are compared on shape and dtype "
        "only. Each op runs in a worker subprocess with a "
        f"{result['config']['timeout']:g} s timeout, so a crash is recorded and the sweep goes on.\n")
    L.append(f"- Date: {datetime.date.today().isoformat()}; torch {torch_version}; Python "
             f"{platform.python_version()}; {os.cpu_count()} CPUs; {result['config']['workers']} worker(s), "
             f"{result['config']['threads']} thread(s) each")
    L.append(f"- Source: {git_revision()}")
    L.append(f"- Wall time: {result['seconds']:.0f} s ({result['seconds'] / 60:.1f} min)")
    L.append(f"- OpInfos: {s['ops']}; (op, dtype) pairs run: {s['counted']}; skipped: {s['overall']['skip']}\n")
    L.append("## Summary\n")
    L.append(f"**Agreement: {s['agreement_pct']:.2f}%** "
             f"({s['overall']['agree']} of {s['counted']} (op, dtype) pairs; "
             "agreement = agree / (agree + mismatch + error + crash + timeout)).\n")
    L.append("| dtype | agree | mismatch | error | crash | timeout | skip | agreement |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for d, c in s["per_dtype"].items():
        L.append(f"| {d} | {c['agree']} | {c['mismatch']} | {c['error']} | {c['crash']} | {c['timeout']} | "
                 f"{c['skip']} | {c['agreement_pct']:.2f}% |")
    o = s["overall"]
    L.append(f"| **all** | {o['agree']} | {o['mismatch']} | {o['error']} | {o['crash']} | {o['timeout']} | "
             f"{o['skip']} | **{s['agreement_pct']:.2f}%** |\n")
    crashes = [r for r in bad if r["outcome"] in ("crash", "timeout")]
    L.append("## Crashes and timeouts\n")
    if crashes:
        for r in crashes:
            L.append(f"- `{r['op']}` [{r['dtype']}] {r['outcome']}: {md_escape(r.get('reason', ''))}")
    else:
        L.append("None: no worker process died or hung.")
    L.append("")
    if bad:
        L.append("## Failure causes\n")
        L.append("Non-agreeing pairs grouped by normalized reason (numbers, shapes and op names elided).\n")
        L.append("| count | cause | examples |")
        L.append("|---:|---|---|")
        groups = collections.defaultdict(list)
        for r in bad:
            groups[cause_of(r)].append(r)
        for cause, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            ex = ", ".join(f"`{r['op']}`[{r['dtype']}]" for r in rs[:4]) + (" ..." if len(rs) > 4 else "")
            L.append(f"| {len(rs)} | {md_escape(cause)} | {ex} |")
        L.append("")
        diagnosed = collections.defaultdict(list)
        for r in bad:
            diagnosed[diagnosis_of(r)].append(r)
        L.append("### Diagnoses\n")
        L.append("From the entries of `tests/opinfo/expected_failures.py` that list the pair's forward check.\n")
        for dx, rs in sorted(diagnosed.items(), key=lambda kv: (not kv[0], -len(kv[1]))):
            ops = sorted({r["op"] for r in rs})
            L.append(f"- **{len(rs)} pairs** ({', '.join(f'`{o}`' for o in ops)}): "
                     + (dx or "**no entry**: a new failure, to fix or to diagnose"))
        L.append("")
        L.append("## Everything that does not agree\n")
        L.append("`sample` is the first failing sample: input, args and kwargs as `T[shape]:dtype` "
                 "(plus `/stride`, `/off` and values for small tensors).\n")
        L.append("| op | dtype | outcome | reason | sample |")
        L.append("|---|---|---|---|---|")
        for r in bad:
            L.append(f"| `{r['op']}` | {r['dtype']} | {r['outcome']} | {md_escape(one_line(r.get('reason', ''), 260))} "
                     f"| {md_escape(one_line(r.get('sample', ''), 160))} |")
        L.append("")
    gen_skips = sorted((r for r in recs if r["outcome"] == "skip" and r.get("reason") != "dtype not supported on CPU"),
                       key=lambda r: (r["op"], r["dtype"]))
    if gen_skips:
        L.append("## Skipped because CPU could not produce samples\n")
        L.append("Not counted: the CPU side itself failed to generate sample inputs.\n")
        for r in gen_skips:
            L.append(f"- `{r['op']}` [{r['dtype']}]: {md_escape(r.get('reason', ''))}")
        L.append("")
    vacuous = sorted((r for r in recs if r["outcome"] == "agree" and r.get("samples")
                      and r.get("cpu_raised") == r.get("samples")), key=lambda r: (r["op"], r["dtype"]))
    if vacuous:
        L.append("## Agreeing only because both sides raise\n")
        L.append("CPU raised on every sample (e.g. CUDA-only ops) and sunrise raised too; counted as agreement.\n")
        by_op = collections.defaultdict(list)
        for r in vacuous:
            by_op[r["op"]].append(r["dtype"])
        L.append(", ".join(f"`{o}` ({', '.join(ds)})" for o, ds in by_op.items()) + "\n")
    meta = sorted({r["op"] for r in recs if r.get("metadata_only")})
    if meta:
        L.append("## Compared on shape and dtype only (random or uninitialized outputs)\n")
        L.append(", ".join(f"`{m}`" for m in meta) + "\n")
    rnd = sorted({r["op"] for r in recs if r.get("random_samples") and not r.get("metadata_only")})
    if rnd:
        L.append("Also compared on shape and dtype only, for the samples that run a seeded random ATen op "
                 "(e.g. `dropout_p > 0`; sunrise has its own generator, as CUDA does): "
                 + ", ".join(f"`{m}`" for m in rnd) + "\n")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default=",".join(SWEEP_DTYPES), help="comma-separated (default: %(default)s)")
    p.add_argument("--ops", default=None,
                   help="comma-separated substrings of OpInfo names (name.variant); '=name' matches exactly")
    p.add_argument("--quick", action="store_true", help="only the representative subset used by the pytest")
    p.add_argument("--limit-samples", type=int, default=4,
                   help="samples per (op, dtype), 0 for all (default: %(default)s)")
    p.add_argument("--max-ops", type=int, default=None, help="only the first N OpInfos (after --ops)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per (op, dtype) (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, 1 or 2 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default: %(default)s)")
    p.add_argument("--report", default=None, help="write a Markdown report here (e.g. docs/opinfo_sweep.md)")
    p.add_argument("--json", default=None, help="write all records as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    # internal: worker mode
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker_main(args.worker, args.fd, args.limit_samples, args.threads)

    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    ops_filter = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    result = run_sweep(dtypes=dtypes, ops_filter=ops_filter, max_ops=args.max_ops,
                       limit_samples=args.limit_samples, timeout=args.timeout, workers=args.workers,
                       threads=args.threads, exact_ops=SWEEP_QUICK_OPS if args.quick else None,
                       progress=not args.quiet)
    summary = print_summary(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "summary": summary}, f, indent=1)
    if args.report:
        given = list(argv if argv is not None else sys.argv[1:])
        shown = []
        for a in given:  # the report shows how to regenerate it, not where the JSON went
            if shown and shown[-1] == "--json":
                shown.pop()
                continue
            if not a.startswith("--json=") and a != "--quiet":
                shown.append(a)
        cmd = "python -m tests.opinfo.sweep " + " ".join(shown)
        write_report(result, args.report, cmd.strip())
        print(f"report written to {args.report}")
    return 0 if summary["overall"]["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
