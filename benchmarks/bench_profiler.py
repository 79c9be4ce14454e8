"""What the profiler shows of the device, and what profiling costs: a GPT-2 training step.

Run: .venv/bin/python -m benchmarks.bench_profiler [--repeats 5]

* Coverage: the device work in a ``torch.profiler`` trace of one training step (kernels, host-function
  tasks, copies and sets on the sunrise lanes), against the time the device's stream threads were
  busy during that step as the runtime counts it (``srDeviceGetBusyTime``: time outside waiting for
  work). 100 % would mean every moment the device was busy is an event in the trace.
* Cost: the step's time unprofiled, profiled with CPU activities only, and with device activities;
  CPU eager beside them. Profiling off must cost nothing: compare ``benchmarks.bench_ops``
  (16-element add) with the README's figure.

GPT-2 with 4 layers of width 256 (4 heads, vocabulary 8,000), batch 4 x 64 tokens, AdamW.
Medians over ``--repeats`` rounds, the ways alternating within each round.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

import torch_sunrise  # noqa: F401  (registers the device)
from torch_sunrise import _C

DEVICE_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


def build(device: str):
    import transformers

    cfg = transformers.GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8000, n_positions=128)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (4, 64), generator=torch.Generator().manual_seed(1)).to(device)
    return model, opt, ids


def step(model, opt, ids) -> float:
    loss = model(ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()


def device_event_time_us(prof: profile) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        with open(f.name) as r:
            events = json.load(r)["traceEvents"]
    return sum(e["dur"] for e in events if e.get("cat") in DEVICE_CATEGORIES and e.get("ph") == "X")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    cpu = build("cpu")
    sunrise = build("sunrise")
    for m in (cpu, sunrise):
        step(*m)  # warm-up: optimizer state, first-call caches
    times: dict[str, list[float]] = {k: [] for k in ("cpu", "sunrise", "sunrise, CPU profiled", "sunrise, profiled")}
    coverage = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step(*cpu)
        times["cpu"].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        step(*sunrise)
        times["sunrise"].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]):
            step(*sunrise)
        times["sunrise, CPU profiled"].append(time.perf_counter() - t0)

        torch.sunrise.synchronize()
        busy0 = _C._runtime.device_busy_ns(0)
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.PrivateUse1]) as prof:
            step(*sunrise)
        times["sunrise, profiled"].append(time.perf_counter() - t0)
        torch.sunrise.synchronize()
        busy_us = (_C._runtime.device_busy_ns(0) - busy0) / 1e3
        coverage.append(device_event_time_us(prof) / busy_us)

    base = statistics.median(times["cpu"])
    print(f"GPT-2 4x256 training step, medians of {args.repeats}:")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:<24} {med * 1e3:8.1f} ms  {med / base:5.2f}x CPU")
    print(f"device events / device busy time: median {statistics.median(coverage) * 100:.1f} % "
          f"(min {min(coverage) * 100:.1f} %, max {max(coverage) * 100:.1f} %)")


if __name__ == "__main__":
    main()
