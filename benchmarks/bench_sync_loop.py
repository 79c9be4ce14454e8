"""A training loop that reads the loss every step (`loss.item()`), sunrise beside CPU eager.

Run: .venv/bin/python -m benchmarks.bench_sync_loop [--runs 3] [--steps 210] [--loader] [--background] [--wide]

Each step waits for the device (`loss.item()`), the pattern of nearly every
training script's logging. What matters there is not throughput but how long
each step takes: a device whose threads contend with the host for the cores
shows it as stalls of a scheduler time slice (tens of milliseconds) on some
steps. The loop is the README quickstart's (MLP 32-64-64-4 with GELU, AdamW,
batch 256); per step it prints the median, p99 and max step time and the count
of steps over 5 ms, for CPU eager and sunrise in the same process.

--loader feeds the batches from a DataLoader with 2 worker processes (as
training scripts do); --background runs a busy process beside the benchmark
(one core's worth of other load); --wide makes the hidden layers 256 wide, so
that the products are large enough for the device thread's OpenMP team (the
quickstart's run on the device thread alone). --runs N repeats in N fresh
processes and prints each one.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import statistics
import time

import torch
import torch.nn as nn

import torch_sunrise  # noqa: F401  (registers the device)

from benchmarks._processes import results_of_fresh_processes

STALL_MS = 5.0


class RandomBatches(torch.utils.data.Dataset):
    """Batches of the quickstart's data, made in the worker processes."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return torch.randn(256, 32, generator=g), torch.randint(0, 4, (256,), generator=g)


def step_times(model: nn.Module, device: str, steps: int, loader: bool) -> tuple[list[float], list[float]]:
    """Per-step times (ms) and losses of `steps` sync-every-step training steps."""
    model = copy.deepcopy(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if loader:
        batches = iter(torch.utils.data.DataLoader(RandomBatches(steps), batch_size=None, num_workers=2,
                                                   pin_memory=device != "cpu", pin_memory_device=device
                                                   if device != "cpu" else ""))
    else:
        g = torch.Generator().manual_seed(0)
        data = (torch.randn(256, 32, generator=g).to(device), torch.randint(0, 4, (256,), generator=g).to(device))
        batches = (data for _ in range(steps))
    times, losses = [], []
    for x, y in batches:
        start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append((time.perf_counter() - start) * 1e3)
    return times, losses


def summary(times: list[float], warmup: int) -> dict:
    t = sorted(times[warmup:])
    return {"median": statistics.median(t), "p99": t[min(len(t) - 1, int(0.99 * len(t)))], "max": t[-1],
            "stalls": sum(1 for v in t if v > STALL_MS), "steps": len(t)}


def busy(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(100000):
            x += i


def run_once(steps: int, loader: bool, background: bool, width: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 4))
    stop = mp.get_context("spawn").Event() if background else None
    load = mp.get_context("spawn").Process(target=busy, args=(stop,), daemon=True) if background else None
    if load:
        load.start()
    try:
        warmup = min(10, steps // 10)
        result = {}
        losses = {}
        for device in ("cpu", "sunrise"):
            times, losses[device] = step_times(model, device, steps, loader)
            result[device] = summary(times, warmup)
        result["same_losses"] = losses["cpu"] == losses["sunrise"]
        return result
    finally:
        if load:
            stop.set()
            load.join(timeout=10)
            if load.is_alive():
                load.kill()


def fmt(name: str, s: dict) -> str:
    return (f"{name:<8} median {s['median']:6.2f} ms  p99 {s['p99']:6.2f} ms  max {s['max']:6.2f} ms  "
            f"steps > {STALL_MS:g} ms: {s['stalls']} of {s['steps']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=210)
    parser.add_argument("--runs", type=int, default=1, help="fresh processes")
    parser.add_argument("--loader", action="store_true", help="a DataLoader with 2 worker processes feeds the batches")
    parser.add_argument("--background", action="store_true", help="a busy process runs beside the benchmark")
    parser.add_argument("--wide", action="store_true", help="hidden layers 256 wide (products on the device's team)")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs > 1:
        flags = ["--steps", str(args.steps)] + [f"--{name}" for name in ("loader", "background", "wide")
                                                 if getattr(args, name)]
        rows = results_of_fresh_processes("benchmarks.bench_sync_loop", flags, args.runs, timeout_s=600)
        print("\n| process | CPU eager median / p99 / max (ms) | sunrise median / p99 / max (ms) | sunrise steps > 5 ms "
              "| median ratio | p99 ratio | losses bitwise equal |\n| --- | --- | --- | --- | --- | --- | --- |")
        for i, r in enumerate(rows):
            c, s = r["cpu"], r["sunrise"]
            print(f"| {i + 1} | {c['median']:.2f} / {c['p99']:.2f} / {c['max']:.2f} | {s['median']:.2f} / "
                  f"{s['p99']:.2f} / {s['max']:.2f} | {s['stalls']} of {s['steps']} | "
                  f"{s['median'] / c['median']:.2f} | {s['p99'] / c['p99']:.2f} | {r['same_losses']} |")
        return
    result = run_once(args.steps, args.loader, args.background, 256 if args.wide else 64)
    print(fmt("cpu", result["cpu"]))
    print(fmt("sunrise", result["sunrise"]))
    print(f"ratio    median {result['sunrise']['median'] / result['cpu']['median']:.2f}  "
          f"p99 {result['sunrise']['p99'] / result['cpu']['p99']:.2f}  losses bitwise equal: {result['same_losses']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
