"""Cost of a cached device allocation: ``torch.empty(1 MiB, uint8, device="sunrise")``
followed by ``del``, beside the same on the CPU allocator, in the same process.

After a warm-up the sunrise caching allocator serves every request from its
cache (the script checks that no device allocation happened while measuring),
so this is the host-side cost of a tensor's allocation and free: dispatch,
tensor metadata and the allocator's bookkeeping.

    .venv/bin/python -m benchmarks.bench_allocator [--size BYTES] [--iters 1000] [--repeats 20]

Prints the median (and min / max) over ``--repeats`` timings of ``--iters``
alloc+free pairs, in microseconds per pair, and the sunrise / CPU ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import torch


def _time_alloc_free(device: torch.device, size: int, iters: int) -> float:
    """Microseconds per alloc+free pair over ``iters`` pairs."""
    empty, uint8 = torch.empty, torch.uint8
    start = time.perf_counter_ns()
    for _ in range(iters):
        x = empty(size, dtype=uint8, device=device)
        del x
    return (time.perf_counter_ns() - start) / iters / 1000.0


def run(size: int, iters: int, repeats: int, warmup: int) -> dict[str, object]:
    sunrise = torch.device("sunrise", 0)
    cpu = torch.device("cpu")
    devices = {"sunrise": sunrise, "cpu": cpu}
    for device in devices.values():
        _time_alloc_free(device, size, warmup)
    torch.sunrise.synchronize()
    device_allocs_before = torch.sunrise.memory_stats(0)["num_device_alloc"]

    samples: dict[str, list[float]] = {name: [] for name in devices}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):  # interleaved, so drift (other load, frequency) hits both alike
            for name, device in devices.items():
                samples[name].append(_time_alloc_free(device, size, iters))
    finally:
        if gc_was_enabled:
            gc.enable()
    torch.sunrise.synchronize()
    device_allocs = torch.sunrise.memory_stats(0)["num_device_alloc"] - device_allocs_before

    result: dict[str, object] = {"size_bytes": size, "iters": iters, "repeats": repeats,
                                 "device_allocs_while_measuring": device_allocs}
    for name, values in samples.items():
        result[name] = {"median_us": statistics.median(values), "min_us": min(values), "max_us": max(values)}
    result["ratio_sunrise_over_cpu"] = result["sunrise"]["median_us"] / result["cpu"]["median_us"]  # type: ignore[index]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes per allocation (default 1 MiB)")
    parser.add_argument("--iters", type=int, default=1000, help="alloc+free pairs per timing")
    parser.add_argument("--repeats", type=int, default=20, help="timings per device (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1000, help="untimed pairs per device first")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    result = run(args.size, args.iters, args.repeats, args.warmup)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"torch {torch.__version__}; {args.repeats} repeats x {args.iters} alloc+free pairs of "
              f"{args.size} bytes (uint8), after {args.warmup} warm-up pairs")
        print(f"{'allocator':<10} {'median us':>10} {'min us':>10} {'max us':>10}")
        for name in ("sunrise", "cpu"):
            r = result[name]
            print(f"{name:<10} {r['median_us']:>10.3f} {r['min_us']:>10.3f} {r['max_us']:>10.3f}")
        print(f"ratio sunrise/cpu (medians): {result['ratio_sunrise_over_cpu']:.2f}")
        print(f"device allocations while measuring: {result['device_allocs_while_measuring']} "
              "(0: every request came from the cache)")
    if result["device_allocs_while_measuring"]:
        print("error: the caching allocator went to the device while measuring", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
