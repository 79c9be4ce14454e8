"""sunrise beside CPU eager, same process, medians: the performance table of the README (with its floors).

Run: .venv/bin/python -m benchmarks.bench_ops [--quick] [--markdown] [--runs N] [--svg FILE]

--runs N repeats the whole benchmark in N fresh processes (each one still
measures sunrise beside CPU eager in the same process) and reports, per case,
the median CPU and sunrise times, the median ratio and its range over the runs:
on a noisy machine a single run misleads.

Each case runs the same PyTorch code on "cpu" and on "sunrise"; sunrise timings
include a final synchronize, so they are end-to-end. Ratio = sunrise / CPU
(lower is better; 1.0 means "as fast as the CPU allows").
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import torch
import torch.nn as nn

import torch_sunrise


def _sync(device: str) -> None:
    if device.startswith("sunrise"):
        torch.sunrise.synchronize()


def median_time(fn: Callable[[], object], device: str, inner: int, repeats: int) -> float:
    """Median over `repeats` of the time per call of `inner` back-to-back calls (seconds)."""
    # Each case starts from the same state: no garbage of earlier cases left to
    # collect, no device memory of theirs left cached.
    gc.collect()
    torch.sunrise.synchronize()
    torch.sunrise.empty_cache()
    fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def case_small_add(device: str, quick: bool):
    a, b = torch.randn(16, device=device), torch.randn(16, device=device)
    return median_time(lambda: a.add(b), device, 2000 if not quick else 500, 7), 1e6, "µs/op"


def case_mlp(device: str, quick: bool):
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    model = nn.Sequential(*layers).to(device)
    x = torch.randn(32, 64, device=device)
    with torch.no_grad():
        return median_time(lambda: model(x), device, 200 if not quick else 50, 7), 1e6, "µs/fwd"


def case_mm(device: str, quick: bool):
    a = torch.randn(1024, 1024, device=device)
    return median_time(lambda: a @ a, device, 5 if not quick else 2, 5), 1e3, "ms"


def case_add_64mb(device: str, quick: bool):
    a = torch.randn(16 << 20, device=device)
    return median_time(lambda: a + a, device, 3, 5), 1e3, "ms"


def case_softmax_64mb(device: str, quick: bool):
    a = torch.randn(16 << 10, 1024, device=device)
    return median_time(lambda: torch.softmax(a, -1), device, 3, 5), 1e3, "ms"


def _copy_case(direction: str):
    def case(device: str, quick: bool):
        n = 64 << 20  # 256 MiB of float32
        if device == "cpu":  # the host memcpy bandwidth the transfers are compared to
            src, dst = torch.empty(n), torch.empty(n)
            src.fill_(1)
            dst.fill_(0)
            return median_time(lambda: dst.copy_(src), device, 2, 5), 1e3, "ms"
        host = torch.empty(n).pin_memory()
        dev = torch.empty(n, device=device)
        dev.fill_(0)
        host.fill_(1)
        if direction == "h2d":
            return median_time(lambda: dev.copy_(host, non_blocking=True), device, 2, 5), 1e3, "ms"
        return median_time(lambda: host.copy_(dev, non_blocking=True), device, 2, 5), 1e3, "ms"

    return case


def _gpt2(device: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=6, n_embd=512, n_head=8, n_positions=256, vocab_size=8000, bos_token_id=0,
                        eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    return model.to(device)


def case_gpt2_forward(device: str, quick: bool):
    model = _gpt2(device)
    ids = torch.randint(0, 8000, (1, 128), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        return median_time(lambda: model(ids).logits, device, 3 if not quick else 1, 5), 1e3, "ms"


def case_gpt2_generate(device: str, quick: bool):
    model = _gpt2(device)
    ids = torch.randint(0, 8000, (1, 16), generator=torch.Generator().manual_seed(0)).to(device)
    kwargs = dict(max_new_tokens=32, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        return median_time(lambda: model.generate(ids, **kwargs), device, 1, 3 if not quick else 1), 1e3, "ms"


# The floors, as the largest acceptable sunrise / CPU ratio (transfers:
# at least 85 % of host memcpy bandwidth, i.e. at most 1 / 0.85 of its time).
FLOORS = {
    "16-element add": 1.6, "MLP 8x64, batch 32, forward": 1.5, "mm 1024x1024": 1.1, "add, 64 MB": 1.1,
    "softmax, 64 MB": 1.1, "H2D 256 MB (vs host memcpy)": 1 / 0.85, "D2H 256 MB (vs host memcpy)": 1 / 0.85,
    "GPT-2 (6x512) forward, 128 tokens": 1.1, "GPT-2 (6x512) greedy, 32 new tokens": 1.3,
}


def write_svg(rows: list[tuple], path: str) -> None:
    """A horizontal bar chart of the ratios, with each case's floor marked (no plotting dependency)."""
    width, left, bar, gap, top = 760, 290, 18, 10, 40
    scale_max = max(2.0, max(r[4] for r in rows) * 1.1, max(FLOORS.get(r[0], 0) for r in rows) * 1.1)
    x = lambda v: left + (width - left - 30) * v / scale_max  # noqa: E731
    height = top + len(rows) * (bar + gap) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-weight="bold">sunrise time / CPU eager time (lower is better; '
           f'| = floor)</text>',
           f'<line x1="{x(1):.1f}" y1="{top - 8}" x2="{x(1):.1f}" y2="{height - 25}" stroke="#888" '
           f'stroke-dasharray="4,3"/>', f'<text x="{x(1) - 8:.1f}" y="{height - 10}">1.0</text>']
    for i, (name, _cpu, _dev, _unit, ratio) in enumerate(rows):
        y = top + i * (bar + gap)
        floor = FLOORS.get(name)
        ok = floor is None or ratio <= floor
        out.append(f'<text x="{left - 8}" y="{y + bar - 5}" text-anchor="end">{name}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x(ratio) - left:.1f}" height="{bar}" '
                   f'fill="{"#4c9a5a" if ok else "#c8553d"}"/>')
        out.append(f'<text x="{x(ratio) + 4:.1f}" y="{y + bar - 5}">{ratio:.2f}</text>')
        if floor is not None:
            out.append(f'<line x1="{x(floor):.1f}" y1="{y - 3}" x2="{x(floor):.1f}" y2="{y + bar + 3}" '
                       f'stroke="black" stroke-width="2"/>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


CASES = [
    ("16-element add", case_small_add),
    ("MLP 8x64, batch 32, forward", case_mlp),
    ("mm 1024x1024", case_mm),
    ("add, 64 MB", case_add_64mb),
    ("softmax, 64 MB", case_softmax_64mb),
    ("H2D 256 MB (vs host memcpy)", _copy_case("h2d")),
    ("D2H 256 MB (vs host memcpy)", _copy_case("d2h")),
    ("GPT-2 (6x512) forward, 128 tokens", case_gpt2_forward),
    ("GPT-2 (6x512) greedy, 32 new tokens", case_gpt2_generate),
]


def run_cases(only: str | None, quick: bool) -> list[tuple]:
    """One run: every CPU eager case, then every sunrise case; rows of (name, cpu, sunrise, unit, ratio)."""
    torch_sunrise.set_fallback_mode("silent")
    cases = [(name, case) for name, case in CASES if not only or only in name]
    # Every CPU eager case first, then every sunrise case: a sunrise device
    # thread that exists keeps a CPU eager OpenMP team from spinning between
    # parallel regions (libgomp throttles spinning once a process has more team
    # threads than cores), which would slow the CPU baseline of later cases.
    cpu_times = {}
    for name, case in cases:
        try:
            cpu_times[name] = case("cpu", quick)
        except ImportError as e:
            print(f"{name}: skipped ({e})")
    rows = []
    for name, case in cases:
        if name not in cpu_times:
            continue
        cpu, scale, unit = cpu_times[name]
        dev, _, _ = case("sunrise", quick)
        rows.append((name, cpu * scale, dev * scale, unit, dev / cpu))
        print(f"{name:<40} cpu {cpu * scale:10.2f} {unit:<7} sunrise {dev * scale:10.2f} {unit:<7} ratio {dev / cpu:6.2f}",
              flush=True)
    return rows


def run_processes(runs: int, only: str | None, quick: bool) -> list[tuple]:
    """`runs` runs, each in a fresh process; rows of (name, median cpu, median sunrise, unit, median ratio, min, max)."""
    per_case: dict[str, list[tuple]] = {}
    for i in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [sys.executable, "-m", "benchmarks.bench_ops", "--json", out.name] + (["--quick"] if quick else [])
            if only:
                cmd += ["--only", only]
            print(f"run {i + 1}/{runs}", flush=True)
            subprocess.run(cmd, check=True)
            for row in json.load(open(out.name)):
                per_case.setdefault(row[0], []).append(row)
    rows = []
    for name, samples in per_case.items():
        ratios = [r[4] for r in samples]
        rows.append((name, statistics.median(r[1] for r in samples), statistics.median(r[2] for r in samples),
                     samples[0][3], statistics.median(ratios), min(ratios), max(ratios)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", default=None, help="substring of the case names to run")
    parser.add_argument("--runs", type=int, default=1, help="whole runs, each in a fresh process (medians and ranges)")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)  # rows of one run, for --runs
    parser.add_argument("--svg", default=None, help="also write the ratios as a bar chart (e.g. docs/bench_ops.svg)")
    args = parser.parse_args()
    if args.runs > 1:
        rows = run_processes(args.runs, args.only, args.quick)
        print(f"\n| case | CPU eager | sunrise | sunrise / CPU (median of {args.runs} runs, range) |\n| --- | --- | --- | --- |")
        for name, cpu, dev, unit, ratio, low, high in rows:
            print(f"| {name} | {cpu:.2f} {unit} | {dev:.2f} {unit} | {ratio:.2f} ({low:.2f}-{high:.2f}) |")
        if args.svg:
            write_svg([row[:5] for row in rows], args.svg)
        return
    rows = run_cases(args.only, args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    if args.markdown:
        print("\n| case | CPU eager | sunrise | sunrise / CPU |\n| --- | --- | --- | --- |")
        for name, cpu, dev, unit, ratio in rows:
            print(f"| {name} | {cpu:.2f} {unit} | {dev:.2f} {unit} | {ratio:.2f} |")
    if args.svg:
        write_svg(rows, args.svg)


if __name__ == "__main__":
    main()
