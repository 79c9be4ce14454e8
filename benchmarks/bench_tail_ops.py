"""Training loops that use former fallback ops every step, sunrise beside CPU eager.

Run: .venv/bin/python -m benchmarks.bench_tail_ops [--steps 300] [--runs 3]

`everyday`: each step buckets the targets with `//`, masks some with `x[mask] = v` (index_put_),
trains an MLP on `mse_loss` plus a `logsigmoid` term (their backward too) and reads the loss
(`.item()`); these ops have hand-written sunrise kernels.
`spectral`: an autoencoder step whose loss adds a spectral term (`torch.fft.rfft` of output and
target, forward and backward) and a `huber_loss`, reading the loss every step; these ops have no
sunrise kernel and run on the fallback's queued path (the CPU kernel as device work). Each run
measures it a second time in a process with SUNRISE_QUEUED_FALLBACK=0, where they take the
synchronous fallback (a device drain per call), for comparison.

The script prints the median step time of each device, their ratio, and the ops that took the
synchronous fallback (none expected, but for the comparison run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_sunrise


def timed_steps(model: nn.Module, steps: int, loss_of: Callable[[nn.Module], torch.Tensor]) -> list[float]:
    """Times `steps` training steps (ms): zero_grad, the loss, backward, an AdamW step, and the
    loss read on the host (the wait a logging loop makes every step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad()
        loss = loss_of(model)
        loss.backward()
        opt.step()
        loss.item()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def everyday_step_times(device: str, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 1)).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g).to(device)
    t = (torch.rand(256, generator=g) * 100).to(device)

    def loss_of(m: nn.Module) -> torch.Tensor:
        target = (t // 10) / 10  # floor_divide
        target[target > 0.8] = 0.8  # index_put_ with a boolean mask
        out = m(x).squeeze(1)
        return F.mse_loss(out, target) - 0.01 * F.logsigmoid(out).mean()

    return timed_steps(model, steps, loss_of)


def spectral_step_times(device: str, steps: int) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 128), nn.GELU(), nn.Linear(128, 256)).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g).to(device)
    target_spectrum = torch.fft.rfft(x).abs()

    def loss_of(m: nn.Module) -> torch.Tensor:
        out = m(x)
        spectral = (torch.fft.rfft(out).abs() - target_spectrum).pow(2).mean()  # _fft_r2c, _fft_c2c
        return F.huber_loss(out, x) + 0.1 * spectral  # huber_loss and its backward

    return timed_steps(model, steps, loss_of)


LOOPS = {"everyday": everyday_step_times, "spectral": spectral_step_times}


def run_once(loop: str, steps: int) -> tuple[float, float, str]:
    torch_sunrise.set_fallback_mode("silent")
    torch_sunrise.reset_fallback_stats()
    warm = steps // 10
    cpu = statistics.median(LOOPS[loop]("cpu", steps)[warm:])
    dev = statistics.median(LOOPS[loop]("sunrise", steps)[warm:])
    return cpu, dev, ",".join(sorted(torch_sunrise.fallback_stats())) or "none"


def one_process(loop: str, steps: int, queued: bool = True) -> tuple[float, float, str]:
    env = dict(os.environ, SUNRISE_QUEUED_FALLBACK="1" if queued else "0")
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_tail_ops", "--one", loop, "--steps", str(steps)],
                         capture_output=True, text=True, check=True, timeout=600, env=env)
    cpu, dev, fell_back = out.stdout.split()
    return float(cpu), float(dev), fell_back


def summary(name: str, rows: list[tuple[float, float, str]]) -> str:
    ratios = sorted(d / c for c, d, _ in rows)
    return (f"{name}: CPU eager {statistics.median(c for c, _, _ in rows):.3f} ms, "
            f"sunrise {statistics.median(d for _, d, _ in rows):.3f} ms, ratio {statistics.median(ratios):.2f} "
            f"({ratios[0]:.2f}-{ratios[-1]:.2f}); synchronous fallback: {sorted({f for _, _, f in rows})}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--runs", type=int, default=1, help="fresh processes per loop")
    p.add_argument("--one", choices=sorted(LOOPS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        cpu, dev, fell_back = run_once(args.one, args.steps)
        print(f"{cpu:.3f} {dev:.3f} {fell_back}")
        return
    print(f"step medians over {args.runs} run(s) of {args.steps} steps (ratio: median, range)")
    for loop in LOOPS:
        print(summary(loop, [one_process(loop, args.steps) for _ in range(args.runs)]))
    print(summary("spectral, SUNRISE_QUEUED_FALLBACK=0",
                  [one_process("spectral", args.steps, queued=False) for _ in range(args.runs)]))


if __name__ == "__main__":
    main()
