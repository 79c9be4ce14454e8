"""Device memory over a long training run: does the caching allocator reach a
steady state, and does everything come back when the model is deleted?

A small MLP (64 -> 256 -> 256 -> 10, ReLU), AdamW, batches of 64 from a
synthetic data set that lives on the device, trained for ``--steps`` steps
(default 10,000) on sunrise. ``memory_allocated`` and ``memory_reserved`` are
recorded at steps 1, 100, 1000, 5000 and 10000 (those within ``--steps``, plus
the last step). Then model, optimizer and data are deleted and
``memory_allocated`` is compared with its value before the model was created.

Exit status 1 if ``memory_reserved`` grows after step 100 or
``memory_allocated`` does not return to the baseline. The same loop on the CPU
(``--cpu-steps``, default 200) gives the time per step as a ratio.

    .venv/bin/python -m benchmarks.training_memory [--steps 10000] [--cpu-steps 200]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import torch
import torch_sunrise

CHECKPOINTS = (1, 100, 1000, 5000, 10000)
BATCH, IN, HIDDEN, OUT = 64, 64, 256, 10
DATASET_BATCHES = 16  # synthetic batches kept on the device, cycled through


def _mib(n: int) -> str:
    return f"{n / 2**20:9.3f} MiB"


def _make(device: torch.device, seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, OUT),
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    # a learnable synthetic task: the label is the argmax of a fixed projection
    proj = torch.randn(IN, OUT, generator=g)
    xs = torch.randn(DATASET_BATCHES, BATCH, IN, generator=g)
    ys = (xs @ proj).argmax(-1)
    return model, opt, xs.to(device), ys.to(device)


def _step(model, opt, x, y) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def _time_cpu(steps: int) -> float:
    model, opt, xs, ys = _make(torch.device("cpu"))
    for i in range(min(10, steps)):  # warm-up
        _step(model, opt, xs[i % DATASET_BATCHES], ys[i % DATASET_BATCHES])
    start = time.perf_counter()
    for i in range(steps):
        _step(model, opt, xs[i % DATASET_BATCHES], ys[i % DATASET_BATCHES])
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10000, help="training steps on sunrise (default 10000)")
    parser.add_argument("--cpu-steps", type=int, default=200, help="steps of the same loop on the CPU, for the "
                        "time-per-step ratio (0: skip)")
    parser.add_argument("--device", default="sunrise:0")
    parser.add_argument("--fallback-warnings", action="store_true", help="keep the CPU-fallback warnings "
                        "(default: silent, with a count of the ops that fell back at the end)")
    args = parser.parse_args(argv)
    if not args.fallback_warnings:
        torch_sunrise.set_fallback_mode("silent")
    torch_sunrise.reset_fallback_stats()
    device = torch.device(args.device)
    checkpoints = sorted({c for c in CHECKPOINTS if c <= args.steps} | {args.steps})

    gc.collect()
    torch.sunrise.synchronize(device)
    torch.sunrise.empty_cache()
    base_allocated = torch.sunrise.memory_allocated(device)
    base_reserved = torch.sunrise.memory_reserved(device)
    print(f"baseline before the model: allocated {_mib(base_allocated)}, reserved {_mib(base_reserved)}")

    model, opt, xs, ys = _make(device)
    params = sum(p.numel() for p in model.parameters())
    print(f"MLP {IN}->{HIDDEN}->{HIDDEN}->{OUT} ({params} parameters), AdamW, batch {BATCH}, "
          f"{args.steps} steps on {device}")
    print(f"{'step':>6} {'allocated':>14} {'reserved':>14} {'loss':>8} {'s/step (window)':>16}")
    records: dict[int, tuple[int, int]] = {}
    first_loss = last_loss = float("nan")
    start = window_start = time.perf_counter()
    previous = 0
    for step in range(1, args.steps + 1):
        i = step % DATASET_BATCHES
        loss = _step(model, opt, xs[i], ys[i])
        if step in checkpoints:
            value = loss.item()  # synchronizes the stream
            torch.sunrise.synchronize(device)
            if step == 1:
                first_loss = value
            last_loss = value
            allocated = torch.sunrise.memory_allocated(device)
            reserved = torch.sunrise.memory_reserved(device)
            records[step] = (allocated, reserved)
            now = time.perf_counter()
            per_step = (now - window_start) / (step - previous)
            window_start, previous = now, step
            print(f"{step:>6} {_mib(allocated):>14} {_mib(reserved):>14} {value:>8.4f} {per_step:>16.6f}", flush=True)
    torch.sunrise.synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.sunrise.max_memory_allocated(device)

    del model, opt, xs, ys, loss
    gc.collect()
    torch.sunrise.synchronize(device)
    after_allocated = torch.sunrise.memory_allocated(device)
    torch.sunrise.empty_cache()
    after_reserved = torch.sunrise.memory_reserved(device)

    fallback = torch_sunrise.fallback_stats()
    print(f"peak allocated {_mib(peak)}; loss {first_loss:.4f} -> {last_loss:.4f}")
    print(f"{len(fallback)} ops ran on the CPU fallback ({sum(fallback.values())} calls, "
          f"{sum(fallback.values()) / args.steps:.1f} per step)")
    print(f"sunrise: {elapsed:.1f} s, {elapsed / args.steps * 1000:.3f} ms/step")
    if args.cpu_steps > 0:
        cpu = _time_cpu(args.cpu_steps)
        print(f"cpu eager: {cpu * 1000:.3f} ms/step ({args.cpu_steps} steps); "
              f"ratio sunrise/cpu {elapsed / args.steps / cpu:.2f}")
    print(f"after deleting model, optimizer and data: allocated {_mib(after_allocated)} "
          f"(baseline {_mib(base_allocated)}); reserved after empty_cache {_mib(after_reserved)} "
          f"(baseline {_mib(base_reserved)})")

    failures = []
    steady_from = 100 if 100 in records else None
    if steady_from is not None:
        steady_reserved = records[steady_from][1]
        for step, (_, reserved) in records.items():
            if step > steady_from and reserved > steady_reserved:
                failures.append(f"reserved memory grew after step {steady_from}: "
                                f"{_mib(steady_reserved)} at step {steady_from}, {_mib(reserved)} at step {step}")
    if after_allocated != base_allocated:
        failures.append(f"allocated memory did not return to the baseline: {after_allocated} != {base_allocated} bytes")
    for failure in failures:
        print("FAIL:", failure, file=sys.stderr)
    print("OK" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
