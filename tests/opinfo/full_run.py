"""The full OpInfo suite of tests/test_opinfo_device.py, crash-safe: every OpInfo in op_db, every
dtype it supports on CPU, all six checks, run in chunks of ops, each chunk a pytest subprocess.

A progress plugin (tests/opinfo/progress_plugin.py) reports every test as it starts and ends. When
a chunk's process dies (segfault, abort) the test that was running is recorded as ``crash``; when
no test ends within ``--timeout`` seconds the process is killed and the test recorded as
``timeout``. Either way the chunk is restarted without the tests already done, so one bad op
never loses the run. The driver itself does not import torch.

``--jobs N`` runs N chunks side by side (one process each; on 2 cores, --jobs 2 halves the time).

Usage (from the repository root)::

    python -m tests.opinfo.full_run --json build/opinfo_full/results.json     # everything
    python -m tests.opinfo.full_run --ops add,nn.functional.conv2d              # some OpInfos
    python -m tests.opinfo.full_run --workdir build/opinfo_full --resume        # go on after a stop

then ``python -m tests.opinfo.coverage_report build/opinfo_full/results.json`` writes
docs/op_coverage.md. Defaults: one process, one thread each (SUNRISE_COMPUTE_UNITS=1,
OMP_NUM_THREADS=1), so that the run keeps to about one core.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time

from tests.opinfo.common import KINDS, ROOT, VARIANT_DTYPES, crash_summary, git_revision, signal_name, tail

TEST_FILE = "tests/test_opinfo_device.py"
TEST_CLASS = "TestSunriseOpInfoPRIVATEUSE1"
HEADLINE_DTYPES = ("float32", "bfloat16", "int64", "bool")
OUTCOMES = ("passed", "xfail", "failed", "xpass", "skipped", "crash", "timeout", "error")

_LIST_CODE = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import torch
from torch.testing._internal.common_methods_invocations import op_db
out = []
for op in op_db:
    key = op.name + ("." + op.variant_test_name if op.variant_test_name else "")
    name = lambda ds: sorted(str(d).replace("torch.", "") for d in ds)
    out.append({"op": key, "formatted": op.formatted_name, "dtypes": name(op.supported_dtypes("cpu")),
                "backward_dtypes": name(op.supported_backward_dtypes("cpu")) if op.supports_autograd else [],
                "supports_out": bool(op.supports_out), "inplace": op.inplace_variant is not None,
                "variants": bool(op.method_variant or op.operator_variant or op.inplace_variant or op.aliases),
                "autograd": bool(op.supports_autograd)})
import torch_sunrise
json.dump({"torch": torch.__version__, "torch_sunrise": torch_sunrise.__file__, "ops": out}, sys.stdout)
"""


def child_env(threads: int, snapshot: str | None = None) -> dict:
    env = dict(os.environ)
    env["SUNRISE_FALLBACK"] = "silent"
    env["SUNRISE_COMPUTE_UNITS"] = str(max(1, threads))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(max(1, threads))
    path = ([snapshot] if snapshot else []) + [ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(path)
    env["PYTHONFAULTHANDLER"] = "1"  # a crashing process prints its Python stack to its log
    env.pop("SUNRISE_FULL_OPINFO", None)
    return env


def take_snapshot(workdir: str) -> tuple[str, dict]:
    """Copies the torch_sunrise package (Python files and the built extension) into
    <workdir>/snapshot, which the test processes import instead: a rebuild of the extension
    during the run (which rewrites the .so under running processes) cannot crash them, and the
    whole run measures one build."""
    import hashlib
    import shutil

    src = os.path.join(ROOT, "torch_sunrise")
    dst_root = os.path.join(workdir, "snapshot")
    if os.path.exists(dst_root):
        shutil.rmtree(dst_root)
    shutil.copytree(src, os.path.join(dst_root, "torch_sunrise"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    info = {}
    for name in os.listdir(os.path.join(dst_root, "torch_sunrise")):
        if name.endswith(".so"):
            path = os.path.join(src, name)
            with open(os.path.join(dst_root, "torch_sunrise", name), "rb") as f:
                info = {"extension": name, "sha256": hashlib.sha256(f.read()).hexdigest()[:16],
                        "built": datetime.datetime.fromtimestamp(os.path.getmtime(path)).isoformat(timespec="seconds")}
    return dst_root, info


def list_ops(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-P", "-c", _LIST_CODE], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True)
    return json.loads(out.stdout)


def tests_of(op: dict) -> int:
    n = len(op["dtypes"]) * (2 + op["supports_out"] + op["inplace"])
    n += len(set(op["dtypes"]) & set(VARIANT_DTYPES)) if op.get("variants") else 0
    return n + len(op["backward_dtypes"])


def make_chunks(ops: list[dict], target: int) -> list[list[str]]:
    chunks, cur, size = [], [], 0
    for op in ops:
        cur.append(op["op"])
        size += tests_of(op)
        if size >= target:
            chunks.append(cur)
            cur, size = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def parse_nodeid(nodeid: str, by_formatted: dict) -> tuple[str, str, str] | None:
    """(kind, op, dtype) of a test node id, or None."""
    name = nodeid.rsplit("::", 1)[-1]
    m = re.match(r"test_(" + "|".join(KINDS) + r")_(.+)_sunrise_(\w+)$", name)
    if not m:
        return None
    kind, formatted, dtype = m.groups()
    key = by_formatted.get(formatted)
    return (kind, key, dtype) if key else None


def run_chunk(n: int, ops: list[str], workdir: str, env: dict, timeout: float, log=None) -> dict:
    """Runs one chunk to completion (restarting after crashes / hangs). Returns
    {"events": [...], "records": [...], "incidents": [...]} and writes chunk_<n>.done."""
    prefix = os.path.join(workdir, f"chunk_{n:03d}")
    progress, records, deselect, logfile = (prefix + ".progress", prefix + ".records", prefix + ".deselect",
                                            prefix + ".log")
    for p in (progress, records, deselect, logfile):
        if os.path.exists(p):
            os.remove(p)
    cenv = dict(env, SUNRISE_OPINFO_OPS=",".join(ops), SUNRISE_OPINFO_CHUNK="1", SUNRISE_OPINFO_PROGRESS=progress,
                SUNRISE_OPINFO_RECORD=records, SUNRISE_OPINFO_DESELECT=deselect)
    # -P: the working directory (the repository root, which holds the torch_sunrise sources) is
    # not put first on sys.path, so a snapshot on PYTHONPATH is what gets imported.
    cmd = [sys.executable, "-P", "-m", "pytest", f"{TEST_FILE}::{TEST_CLASS}", "-q", "-p", "tests.opinfo.progress_plugin",
           "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "-rN"]
    done: set[str] = set()
    incidents: list[dict] = []
    attempts_without_progress = 0
    pos = 0
    events: list[dict] = []
    while True:
        with open(logfile, "ab") as lf:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=cenv, stdout=lf, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        current, last = None, time.monotonic()
        started_any = False
        collected = None
        killed = False
        while True:
            rc = proc.poll()
            new = []
            if os.path.exists(progress):
                with open(progress) as f:
                    f.seek(pos)
                    data = f.read()
                cut = data.rfind("\n") + 1
                pos += len(data[:cut].encode())
                new = [json.loads(ln) for ln in data[:cut].splitlines() if ln.strip()]
            for ev in new:
                events.append(ev)
                last = time.monotonic()
                if "start" in ev:
                    current, started_any = ev["start"], True
                elif "finish" in ev:
                    done.add(ev["finish"])
                    current = None
                elif "collected" in ev:
                    collected = ev["collected"]
            if rc is not None:
                break
            if time.monotonic() - last > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed = True
                rc = proc.returncode
                break
            time.sleep(0.5)
        if current is not None:
            what = "timeout" if killed else "crash"
            died = (f"no progress for {timeout:g} s; killed" if killed else
                    f"process {'killed by signal ' + signal_name(-rc) if rc < 0 else 'exited with ' + str(rc)}")
            inc = {"nodeid": current, "outcome": what, "message": f"{died}: {crash_summary(tail(logfile))}"}
            incidents.append(inc)
            events.append({"report": current, "when": "call", "outcome": what, "message": inc["message"]})
            done.add(current)
            attempts_without_progress = 0
            if log:
                print(f"  chunk {n}: {what}: {current}: {inc['message'][:300]}", file=log, flush=True)
        else:
            finished_all = collected is not None and len(done) >= collected + _deselected_count(deselect)
            if rc not in (0, 1, 5) or killed:
                where = "after its last test" if finished_all else "outside any test"
                incidents.append({"chunk": n, "ops": ops, "outcome": "crash" if finished_all else "error",
                                  "message": f"pytest {'was killed' if killed else f'exited with {rc}'} {where}: "
                                             f"{crash_summary(tail(logfile))}"})
                if log:
                    print(f"  chunk {n}: {incidents[-1]['message'][:300]}", file=log, flush=True)
                attempts_without_progress += 1
                if finished_all or attempts_without_progress >= 2:
                    break
            else:
                break  # ran to the end
        if collected is not None and len(done) >= collected + _deselected_count(deselect):
            break
        with open(deselect, "w") as f:
            f.write("\n".join(sorted(done)) + "\n")
    recs = []
    if os.path.exists(records):
        with open(records) as f:
            recs = [json.loads(ln) for ln in f if ln.strip()]
    result = {"chunk": n, "ops": ops, "events": events, "records": recs, "incidents": incidents}
    with open(prefix + ".done", "w") as f:
        json.dump(result, f)
    return result


def _deselected_count(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for ln in f if ln.strip())


def collate(listing: dict, chunk_results: list[dict]) -> list[dict]:
    """One entry per test: kind, op, dtype, outcome, message, duration, record."""
    by_formatted = {o["formatted"]: o["op"] for o in listing["ops"]}
    tests: dict[str, dict] = {}
    recs: dict[tuple, dict] = {}
    for cr in chunk_results:
        for r in cr["records"]:
            recs[(r["kind"], r["op"], r["dtype"])] = r
        for ev in cr["events"]:
            if "report" not in ev:
                continue
            parsed = parse_nodeid(ev["report"], by_formatted)
            if parsed is None:
                continue
            outcome = ev["outcome"]
            if outcome == "failed" and "unexpectedly passed" in ev.get("message", ""):
                outcome = "xpass"
            if outcome == "failed" and ev.get("when") != "call":
                outcome = "error"
            prev = tests.get(ev["report"])
            if prev is not None and prev["outcome"] in ("failed", "error", "crash", "timeout", "xpass"):
                continue  # keep the first failure (e.g. a call failure before a teardown error)
            kind, op, dtype = parsed
            tests[ev["report"]] = {"kind": kind, "op": op, "dtype": dtype, "outcome": outcome,
                                   "message": ev.get("message", ""), "duration": ev.get("duration", 0.0)}
        for inc in cr["incidents"]:
            if inc.get("outcome") == "error" and "chunk" in inc:
                for op in inc["ops"]:
                    key = f"chunk-error::{op}"
                    tests[key] = {"kind": "forward", "op": op, "dtype": "*", "outcome": "error",
                                  "message": inc["message"], "duration": 0.0}
    out = []
    for t in tests.values():
        rec = recs.get((t["kind"], t["op"], t["dtype"]))
        if rec:
            t["record"] = {k: v for k, v in rec.items() if k not in ("kind", "op", "dtype")}
        out.append(t)
    out.sort(key=lambda t: (t["op"], t["dtype"], KINDS.index(t["kind"])))
    return out


def summarize(result: dict) -> dict:
    tests = result["tests"]
    totals = collections.Counter(t["outcome"] for t in tests)
    per_kind = {k: dict(collections.Counter(t["outcome"] for t in tests if t["kind"] == k)) for k in KINDS}
    ops_meta = {o["op"]: o for o in result["listing"]["ops"]}
    fwd = {(t["op"], t["dtype"]): t for t in tests if t["kind"] == "forward"}
    by_pair = collections.defaultdict(list)
    for t in tests:
        if t["kind"] != "grad":
            by_pair[(t["op"], t["dtype"])].append(t)

    def pct(num, den):
        return round(100.0 * num / den, 2) if den else 100.0

    head = [p for p in fwd if p[1] in HEADLINE_DTYPES]
    head_ok = [p for p in head if fwd[p]["outcome"] == "passed"]
    head_all = [p for p in by_pair if p[1] in HEADLINE_DTYPES]
    head_all_ok = [p for p in head_all if all(t["outcome"] == "passed" for t in by_pair[p])]
    all_ok = [p for p in fwd if fwd[p]["outcome"] == "passed"]
    grad32 = [t for t in tests if t["kind"] == "grad" and t["dtype"] == "float32"]
    grad32_ok = [t for t in grad32 if t["outcome"] == "passed"]
    grad_all = [t for t in tests if t["kind"] == "grad"]
    # Per op, over the forward samples of every dtype (ops that ran a sample): native (no fallback
    # call), queued (fallback calls, all run as device work), or synchronizing (some call took the
    # synchronous fallback).
    fb = collections.defaultdict(dict)
    queued_calls = collections.defaultdict(dict)
    reasons = collections.defaultdict(dict)
    for t in tests:
        rec = t.get("record")
        if t["kind"] == "forward" and rec and rec.get("compared", 0) > 0:
            fb[t["op"]][t["dtype"]] = rec.get("fallback", {})
            queued_calls[t["op"]][t["dtype"]] = rec.get("queued", {})
            reasons[t["op"]].update(rec.get("sync_reasons", {}))
    no_sync = sorted(op for op, d in fb.items() if all(not f for f in d.values()))
    native = [op for op in no_sync if all(not q for q in queued_calls[op].values())]
    syncing = {op: reasons[op] for op in fb if op not in no_sync}
    return {
        "totals": {o: totals.get(o, 0) for o in OUTCOMES},
        "tests": len(tests),
        "per_kind": per_kind,
        "ops": len({t["op"] for t in tests}),
        "op_db": len(ops_meta),
        "forward_pairs": len(head),
        "forward_agree": len(head_ok),
        "forward_agreement_pct": pct(len(head_ok), len(head)),
        "forward_all_checks_agreement_pct": pct(len(head_all_ok), len(head_all)),
        "forward_all_dtypes_pairs": len(fwd),
        "forward_all_dtypes_agreement_pct": pct(len(all_ok), len(fwd)),
        "grad_float32_ops": len(grad32),
        "grad_float32_agree": len(grad32_ok),
        "grad_float32_agreement_pct": pct(len(grad32_ok), len(grad32)),
        "grad_all_dtypes_agreement_pct": pct(sum(t["outcome"] == "passed" for t in grad_all), len(grad_all)),
        "ops_exercised": len(fb),
        "native_ops": len(native),
        "native_op_names": native,
        "process_crashes": sum(1 for i in result.get("incidents", []) if i["outcome"] in ("crash", "timeout")),
        "native_pct": pct(len(native), len(fb)),
        "no_sync_ops": len(no_sync),
        "no_sync_pct": pct(len(no_sync), len(fb)),
        "sync_ops": syncing,
    }


def summary_text(result: dict, s: dict | None = None) -> str:
    s = s or summarize(result)
    t = s["totals"]
    lines = [
        f"full OpInfo suite: {s['tests']} tests over {s['ops']} OpInfos in {result['seconds'] / 60:.1f} min",
        "outcomes: " + ", ".join(f"{k}={v}" for k, v in t.items()),
        "per check: " + "; ".join(f"{k}: " + ", ".join(f"{o}={n}" for o, n in sorted(c.items()))
                                  for k, c in s["per_kind"].items()),
        f"forward agreement (float32/bfloat16/int64/bool): {s['forward_agreement_pct']:.2f}% of "
        f"{s['forward_pairs']} (op, dtype) pairs; with out=/in-place/non-contiguous too: "
        f"{s['forward_all_checks_agreement_pct']:.2f}%; all dtypes: {s['forward_all_dtypes_agreement_pct']:.2f}% of "
        f"{s['forward_all_dtypes_pairs']}",
        f"gradients agree (float32): {s['grad_float32_agreement_pct']:.2f}% of {s['grad_float32_ops']} differentiable "
        f"ops; all backward dtypes: {s['grad_all_dtypes_agreement_pct']:.2f}%",
        f"native (no CPU fallback in forward): {s['native_ops']} of {s['ops_exercised']} ops ({s['native_pct']:.2f}%)",
        f"without the synchronous fallback (native or queued): {s['no_sync_ops']} of {s['ops_exercised']} ops "
        f"({s['no_sync_pct']:.2f}%)",
        "synchronizing: " + "; ".join(f"{op} ({', '.join(f'{k}: {v}' for k, v in r.items()) or '?'})"
                                      for op, r in sorted(s["sync_ops"].items())),
        f"process crashes / hangs: {s['process_crashes']}",
    ]
    bad = [x for x in result["tests"] if x["outcome"] in ("failed", "xpass", "crash", "timeout", "error")]
    if bad:
        lines.append(f"not passing ({len(bad)}):")
        for x in bad[:300]:
            msg = " ".join(x["message"].split())[:240]
            lines.append(f"  {x['outcome']:7s} {x['kind']} {x['op']} [{x['dtype']}]: {msg}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default=None, help="comma-separated OpInfo full names (default: all of op_db)")
    p.add_argument("--workdir", default=os.path.join(ROOT, "build", "opinfo_full"),
                   help="chunk logs and partial results (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="keep the chunks already done in --workdir")
    p.add_argument("--chunk-tests", type=int, default=300, help="about this many tests per chunk")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds without a test ending before a kill")
    p.add_argument("--threads", type=int, default=1, help="threads of each test process")
    p.add_argument("--jobs", type=int, default=1, help="chunks run at the same time (one process each)")
    p.add_argument("--json", default=None, help="write all results here (default: <workdir>/results.json)")
    p.add_argument("--no-snapshot", action="store_true",
                   help="import torch_sunrise from the repository instead of a copy taken at the start "
                        "(a concurrent rebuild then crashes the test processes)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    log = None if args.quiet else sys.stderr
    args.workdir = os.path.abspath(args.workdir)

    t0 = time.monotonic()
    os.makedirs(args.workdir, exist_ok=True)
    source = git_revision()  # the code the snapshot (and so the whole run) measures
    snapshot, build = (None, {}) if args.no_snapshot else take_snapshot(args.workdir)
    if args.resume and snapshot and os.path.exists(os.path.join(args.workdir, "build.json")):
        with open(os.path.join(args.workdir, "build.json")) as f:
            previous = json.load(f)
        if previous.get("sha256") != build.get("sha256") and log:
            print("--resume: the extension was rebuilt since the first chunks ran", file=log)
    with open(os.path.join(args.workdir, "build.json"), "w") as f:
        json.dump(build, f)
    env = child_env(args.threads, snapshot)
    listing = list_ops(env)
    if snapshot and not listing["torch_sunrise"].startswith(snapshot):
        p.error(f"the test processes import {listing['torch_sunrise']}, not the snapshot in {snapshot}")
    ops = listing["ops"]
    if args.ops:
        wanted = {o.strip() for o in args.ops.split(",") if o.strip()}
        unknown = wanted - {o["op"] for o in ops}
        if unknown:
            p.error(f"unknown OpInfos: {sorted(unknown)}")
        ops = [o for o in ops if o["op"] in wanted]
    chunks = make_chunks(ops, args.chunk_tests)
    plan_path = os.path.join(args.workdir, "plan.json")
    if args.resume and os.path.exists(plan_path):
        with open(plan_path) as f:
            plan = json.load(f)
        if plan["chunks"] != chunks:
            p.error("--resume: the chunk plan changed (other --ops or --chunk-tests); start afresh")
    else:
        for name in os.listdir(args.workdir):
            if name.startswith("chunk_"):
                os.remove(os.path.join(args.workdir, name))
        with open(plan_path, "w") as f:
            json.dump({"chunks": chunks, "started": datetime.datetime.now().isoformat()}, f)
    total_tests = sum(tests_of(o) for o in ops)
    if log:
        print(f"{len(ops)} OpInfos, about {total_tests} tests, {len(chunks)} chunks", file=log, flush=True)
    counts = collections.Counter()
    previous_seconds = 0.0
    progress = threading.Lock()
    finished = 0

    def one_chunk(n: int, chunk: list[str]) -> dict:
        nonlocal previous_seconds, finished
        done_path = os.path.join(args.workdir, f"chunk_{n:03d}.done")
        if args.resume and os.path.exists(done_path):
            with open(done_path) as f:
                cr = json.load(f)
            with progress:
                previous_seconds += cr.get("seconds", 0.0) / max(1, args.jobs)
        else:
            c0 = time.monotonic()
            cr = run_chunk(n, chunk, args.workdir, env, args.timeout, log)
            cr["seconds"] = round(time.monotonic() - c0, 1)
            with open(done_path, "w") as f:
                json.dump(cr, f)
        with progress:
            finished += 1
            for ev in cr["events"]:
                if "report" in ev:
                    counts[ev["outcome"]] += 1
            if log:
                el = time.monotonic() - t0 + previous_seconds
                print(f"[chunk {finished}/{len(chunks)} {el / 60:6.1f} min] {chunk[0]} .. {chunk[-1]}: "
                      f"{dict(counts)}", file=log, flush=True)
        return cr

    # Chunks are independent processes; --jobs of them run side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one_chunk, range(len(chunks)), chunks))
    import importlib.metadata as md

    result = {
        "config": {"ops": args.ops, "chunk_tests": args.chunk_tests, "timeout": args.timeout,
                   "threads": args.threads, "jobs": args.jobs, "chunks": len(chunks)},
        "environment": {"date": datetime.date.today().isoformat(), "torch": listing["torch"],
                        "python": platform.python_version(), "cpus": os.cpu_count(), "source": source,
                        "torch_sunrise": md.version("torch_sunrise") if _has_dist("torch_sunrise") else "?",
                        "build": build, "threads": args.threads},
        "seconds": round(time.monotonic() - t0 + previous_seconds, 1),
        "listing": {"torch": listing["torch"], "ops": ops},
        "incidents": [i for cr in results for i in cr["incidents"]],
        "tests": collate(listing, results),
    }
    out = args.json or os.path.join(args.workdir, "results.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=0)
    s = summarize(result)
    if log:
        print(summary_text(result, s), file=log)
        print(f"results written to {out}", file=log)
    return 0 if s["process_crashes"] == 0 else 1


def _has_dist(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
