"""torch.distributed on sunrise beside gloo on CPU tensors: all_reduce bandwidth and a DDP step.

Run: .venv/bin/python -m benchmarks.bench_distributed [--repeats 15] [--runs 1]

Two ranks on this machine (loopback TCP), one process group ``"cpu:gloo,sunrise:sccl"``, so the
same processes time both: sunrise tensors go through the sccl backend, CPU tensors through gloo.

* all_reduce (SUM, float32) of 1 MB and 64 MB: median time of one call to the end of the device's
  work (``torch.sunrise.synchronize()``), as bus bandwidth (2 (n-1)/n x bytes / time, NCCL's
  convention); sunrise and CPU alternate.
* DDP training step of a small GPT-2 (4 layers of 256, vocabulary 8,192, batch 4 x 64 tokens per
  rank): forward, backward (gradients all-reduced in buckets, overlapping the backward), AdamW,
  ``loss.item()``; a sunrise DDP model and a CPU (gloo) DDP model in the same processes, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

WORLD = 2


def worker(repeats: int) -> dict:
    import torch

    import torch_sunrise  # noqa: F401
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank = int(os.environ["RANK"])
    dev = torch.device("sunrise", rank % torch.sunrise.device_count())
    torch.sunrise.set_device(dev)
    dist.init_process_group("cpu:gloo,sunrise:sccl")

    def timed(fn, device: str) -> float:
        if device != "cpu":
            torch.sunrise.synchronize()
        dist.barrier()
        start = time.perf_counter()
        fn()
        if device != "cpu":
            torch.sunrise.synchronize()
        return time.perf_counter() - start

    result: dict = {"all_reduce": {}}
    for mbytes in (1, 64):
        n = mbytes * (1 << 20) // 4
        tensors = {"cpu": torch.ones(n), "sunrise": torch.ones(n, device=dev)}
        samples: dict[str, list[float]] = {d: [] for d in tensors}
        for i in range(repeats + 3):
            for d, t in tensors.items():
                s = timed(lambda t=t: dist.all_reduce(t), d)
                if i >= 3:
                    samples[d].append(s)
        bus = 2 * (WORLD - 1) / WORLD * n * 4
        result["all_reduce"][f"{mbytes}MB"] = {
            d: {"ms": statistics.median(v) * 1e3, "GBps": bus / statistics.median(v) / 1e9} for d, v in samples.items()
        }

    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8192, n_positions=128, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    base = GPT2LMHeadModel(cfg)
    models = {"cpu": DDP(base), "sunrise": DDP(GPT2LMHeadModel(cfg).to(dev), device_ids=[dev.index])}
    models["sunrise"].module.load_state_dict(base.state_dict())
    opts = {d: torch.optim.AdamW(m.parameters(), lr=1e-4) for d, m in models.items()}
    gen = torch.Generator().manual_seed(rank)
    ids = torch.randint(0, 8192, (4, 64), generator=gen)
    inputs = {"cpu": ids, "sunrise": ids.to(dev)}
    losses: dict[str, list[float]] = {d: [] for d in models}

    def step(d: str) -> None:
        loss = models[d](input_ids=inputs[d], labels=inputs[d]).loss
        loss.backward()
        opts[d].step()
        opts[d].zero_grad(set_to_none=True)
        losses[d].append(loss.item())

    steps: dict[str, list[float]] = {d: [] for d in models}
    for i in range(repeats + 2):
        for d in models:
            s = timed(lambda d=d: step(d), d)
            if i >= 2:
                steps[d].append(s)
    result["ddp_step_ms"] = {d: statistics.median(v) * 1e3 for d, v in steps.items()}
    result["losses_close"] = all(abs(a - b) <= 1e-3 * abs(b) for a, b in zip(losses["sunrise"], losses["cpu"]))
    dist.destroy_process_group()
    return result


def launch(repeats: int, timeout_s: float = 900) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(WORLD),
           "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.bench_distributed", "--worker", "--repeats",
                               str(repeats)], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, text=True, start_new_session=True) for r in range(WORLD)]
    try:
        out, _ = procs[0].communicate(timeout=timeout_s)
        procs[1].wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, 9)
    if procs[0].returncode != 0:
        raise RuntimeError(f"rank 0 failed (exit {procs[0].returncode})")
    return json.loads(out.strip().splitlines()[-1])


def print_result(r: dict) -> None:
    print("| all_reduce, 2 ranks | sunrise (sccl) | CPU (gloo) | sunrise / CPU bandwidth |")
    print("| --- | --- | --- | --- |")
    for size, v in r["all_reduce"].items():
        s, c = v["sunrise"], v["cpu"]
        print(f"| {size} | {s['ms']:.2f} ms, {s['GBps']:.2f} GB/s | {c['ms']:.2f} ms, {c['GBps']:.2f} GB/s "
              f"| {s['GBps'] / c['GBps']:.0%} |")
    d = r["ddp_step_ms"]
    print(f"DDP step (GPT-2 4x256, 2 ranks): sunrise {d['sunrise']:.1f} ms, CPU gloo {d['cpu']:.1f} ms, "
          f"ratio {d['sunrise'] / d['cpu']:.2f}; losses agree: {r['losses_close']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--runs", type=int, default=1, help="fresh launches")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.repeats)
        if int(os.environ["RANK"]) == 0:
            print(json.dumps(result))
        return
    rows = [launch(args.repeats) for _ in range(args.runs)]
    for r in rows:
        print_result(r)
    if len(rows) > 1:
        ratios = [r["all_reduce"]["64MB"]["sunrise"]["GBps"] / r["all_reduce"]["64MB"]["cpu"]["GBps"] for r in rows]
        ddp = [r["ddp_step_ms"]["sunrise"] / r["ddp_step_ms"]["cpu"] for r in rows]
        print(f"over {len(rows)} launches: all_reduce 64 MB bandwidth {min(ratios):.0%}-{max(ratios):.0%} of gloo's, "
              f"DDP step {min(ddp):.2f}-{max(ddp):.2f}x")


if __name__ == "__main__":
    main()
