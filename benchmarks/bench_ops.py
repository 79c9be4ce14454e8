"""sunrise beside CPU eager, same process, medians: the table of issue 4.

Run: .venv/bin/python -m benchmarks.bench_ops [--quick] [--markdown]

Each case runs the same PyTorch code on "cpu" and on "sunrise"; sunrise timings
include a final synchronize, so they are end-to-end. Ratio = sunrise / CPU
(lower is better; 1.0 means "as fast as the CPU allows").
"""

from __future__ import annotations

import argparse
import copy
import statistics
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
    config = GPT2Config(n_layer=6, n_embd=512, n_head=8, n_positions=256, vocab_size=8000)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", default=None, help="substring of the case names to run")
    args = parser.parse_args()
    torch_sunrise.set_fallback_mode("silent")
    rows = []
    for name, case in CASES:
        if args.only and args.only not in name:
            continue
        try:
            cpu, scale, unit = case("cpu", args.quick)
            dev, _, _ = case("sunrise", args.quick)
        except ImportError as e:
            print(f"{name}: skipped ({e})")
            continue
        rows.append((name, cpu * scale, dev * scale, unit, dev / cpu))
        print(f"{name:<40} cpu {cpu * scale:10.2f} {unit:<7} sunrise {dev * scale:10.2f} {unit:<7} ratio {dev / cpu:6.2f}",
              flush=True)
    if args.markdown:
        print("\n| case | CPU eager | sunrise | sunrise / CPU |\n| --- | --- | --- | --- |")
        for name, cpu, dev, unit, ratio in rows:
            print(f"| {name} | {cpu:.2f} {unit} | {dev:.2f} {unit} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
