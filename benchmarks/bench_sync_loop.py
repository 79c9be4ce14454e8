"""A training loop that reads the loss every step (`loss.item()`), sunrise beside CPU eager.

Run: .venv/bin/python -m benchmarks.bench_sync_loop [--runs 3] [--steps 220] [--loader] [--background] [--wide]

Each step waits for the device (`loss.item()`), the pattern of nearly every
training script's logging. What matters there is not throughput but how long
each step takes: a device whose threads contend with the host for the cores
shows it as stalls of a scheduler time slice (tens of milliseconds) on some
steps. The loop is the README quickstart's (MLP 32-64-64-4 with GELU, AdamW,
batch 256); per step it prints the median, p99 and max step time and the count
of steps over 5 ms, for CPU eager and sunrise in the same process, in 4
alternating rounds whose first 5 steps are not timed.

--loader feeds the batches from a DataLoader with 2 worker processes (as
training scripts do; pinned for sunrise, as CUDA users pin theirs); a step's
time includes fetching its batch. --background runs a busy process beside the
benchmark (one core's worth of other load); --wide makes the hidden layers 256
wide, so that the products are large enough for the device thread's OpenMP
team (the quickstart's run on the device thread alone). --runs N repeats in N
fresh processes and prints each one.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterator

import torch
import torch.nn as nn

import torch_sunrise  # noqa: F401  (registers the device)

from benchmarks._processes import results_of_fresh_processes
from benchmarks._settle import settle_before_cpu

STALL_MS = 5.0
ROUNDS = 4
ROUND_WARMUP = 5


class RandomBatches(torch.utils.data.Dataset):
    """Batches of the quickstart's data, made in the worker processes."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return torch.randn(256, 32, generator=g), torch.randint(0, 4, (256,), generator=g)


def training_steps(model: nn.Module, device: str, steps: int, loader: bool) -> Iterator[tuple[float, float]]:
    """Runs `steps` sync-every-step training steps, yielding each one's time (ms) and loss.

    A step's time includes fetching its batch: with a DataLoader, pinning moves that work onto
    the loader's pin-memory thread, running during the step, for sunrise only. Time spent
    between a yield and the next step (the other device's rounds) is not counted.
    """
    model = copy.deepcopy(model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if loader:
        batches = iter(torch.utils.data.DataLoader(RandomBatches(steps), batch_size=None, num_workers=2,
                                                   pin_memory=device != "cpu"))
    else:
        g = torch.Generator().manual_seed(0)
        data = (torch.randn(256, 32, generator=g).to(device), torch.randint(0, 4, (256,), generator=g).to(device))
        batches = iter([data] * steps)
    while True:
        start = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        x, y = (t.to(device, non_blocking=True) for t in batch)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        value = loss.item()
        yield (time.perf_counter() - start) * 1e3, value


def summary(times: list[float]) -> dict:
    t = sorted(times)
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
        devices = ("cpu", "sunrise")
        runs = {d: training_steps(model, d, steps, loader) for d in devices}
        times: dict[str, list[float]] = {d: [] for d in devices}
        losses: dict[str, list[float]] = {d: [] for d in devices}
        # Rounds alternate the devices: this machine's speed drifts over seconds, and one block per
        # device would compare two different machines. A round's first steps find cold caches and
        # the other device's threads just gone idle: they are run, not timed.
        per_round = -(-steps // ROUNDS)
        for _ in range(ROUNDS):
            for d in devices:
                if d == "cpu":
                    settle_before_cpu()
                for i, (t, loss) in enumerate(itertools.islice(runs[d], per_round)):
                    if i >= ROUND_WARMUP:
                        times[d].append(t)
                    losses[d].append(loss)
        result = {d: summary(times[d]) for d in devices}
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
    parser.add_argument("--steps", type=int, default=220)
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
        print("\n| process | CPU eager median / p99 / max (ms) | sunrise median / p99 / max (ms) | steps > 5 ms, CPU / sunrise "
              "| median ratio | p99 ratio | losses bitwise equal |\n| --- | --- | --- | --- | --- | --- | --- |")
        for i, r in enumerate(rows):
            c, s = r["cpu"], r["sunrise"]
            print(f"| {i + 1} | {c['median']:.2f} / {c['p99']:.2f} / {c['max']:.2f} | {s['median']:.2f} / "
                  f"{s['p99']:.2f} / {s['max']:.2f} | {c['stalls']} / {s['stalls']} of {s['steps']} | "
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
