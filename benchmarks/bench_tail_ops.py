"""A training loop that uses former fallback ops every step, sunrise beside CPU eager.

Run: .venv/bin/python -m benchmarks.bench_tail_ops [--steps 300] [--runs 3]

Each step buckets the targets with `//`, masks some with `x[mask] = v` (index_put_), trains an
MLP on `mse_loss` plus a `logsigmoid` term (their backward too) and reads the loss (`.item()`).
On sunrise none of these should take the synchronous CPU fallback (it drains the stream every
call); the script prints the median step time of each device, their ratio, and the ops that fell
back (none expected).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_sunrise


def step_times(model: nn.Module, device: str, steps: int) -> list[float]:
    model = copy.deepcopy(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g).to(device)
    t = (torch.rand(256, generator=g) * 100).to(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        target = (t // 10) / 10  # floor_divide
        target[target > 0.8] = 0.8  # index_put_ with a boolean mask
        opt.zero_grad()
        out = model(x).squeeze(1)
        loss = F.mse_loss(out, target) - 0.01 * F.logsigmoid(out).mean()
        loss.backward()
        opt.step()
        loss.item()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run_once(steps: int) -> tuple[float, float, str]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 1))
    torch_sunrise.set_fallback_mode("silent")
    torch_sunrise.reset_fallback_stats()
    warm = steps // 10
    cpu = statistics.median(step_times(model, "cpu", steps)[warm:])
    dev = statistics.median(step_times(model, "sunrise", steps)[warm:])
    return cpu, dev, ",".join(sorted(torch_sunrise.fallback_stats())) or "none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--runs", type=int, default=1, help="fresh processes")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one or args.runs == 1:
        cpu, dev, fell_back = run_once(args.steps)
        print(f"{cpu:.3f} {dev:.3f} {fell_back}" if args.one else
              f"step median: CPU eager {cpu:.3f} ms, sunrise {dev:.3f} ms, ratio {dev / cpu:.2f}; "
              f"fallback: {fell_back}")
        return
    rows = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_tail_ops", "--one", "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True, timeout=600)
        cpu, dev, fell_back = out.stdout.split()
        rows.append((float(cpu), float(dev), fell_back))
    ratios = sorted(d / c for c, d, _ in rows)
    print(f"step median over {args.runs} runs: CPU eager {statistics.median(c for c, _, _ in rows):.3f} ms, "
          f"sunrise {statistics.median(d for _, d, _ in rows):.3f} ms, ratio {statistics.median(ratios):.2f} "
          f"({ratios[0]:.2f}-{ratios[-1]:.2f}); fallback: {sorted({f for _, _, f in rows})}")


if __name__ == "__main__":
    main()
