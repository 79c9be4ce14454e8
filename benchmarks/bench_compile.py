"""torch.compile on sunrise beside the CPU: GPT-2 forward, training step and static-cache generation.

Run: .venv/bin/python -m benchmarks.bench_compile [--repeats 7] [--runs 1] [--cold]

GPT-2 with 6 layers of width 512 (8 heads, vocabulary 50,257, dropout off), built from its config.
Four ways, in one process: eager CPU, ``torch.compile`` (Inductor) on the CPU, eager sunrise,
``torch.compile`` on sunrise.

* forward: 128 tokens (batch 1) under ``no_grad``, timed to the end of the device's work;
* training step: forward with labels, backward, AdamW step (compiled too, ``torch.compile(opt.step)``),
  then ``loss.item()``, as a training loop reads it every step;
* first call: the first compiled call of each (Dynamo, AOTAutograd, Inductor, the C++ compiler;
  Inductor's on-disk cache is whatever earlier runs left, ``--cold`` starts from an empty one);
* generation: greedy ``generate`` of 32 tokens after an 8-token prompt with
  ``cache_implementation="static"``, which on sunrise compiles the decoding forward as on CUDA (and,
  as CUDA with its default ``mode="reduce-overhead"``, replays it as graphs); eager
  sunrise (``disable_compile=True``) beside it, tokens compared with eager CPU.

Medians over ``--repeats`` timings; the four ways alternate within each repeat (this machine's speed
drifts over seconds).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from typing import Any, Callable

import torch

import torch_sunrise  # noqa: F401  (registers the device)

from benchmarks._processes import results_of_fresh_processes

WAYS = ("eager_cpu", "compiled_cpu", "eager_sunrise", "compiled_sunrise")


def build_model() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=6, n_embd=512, n_head=8, n_positions=512, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config)


def sync(device: str) -> None:
    if device != "cpu":
        torch.sunrise.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


class Way:
    """One of the four: a model on a device, eager or compiled, with its optimizer and inputs."""

    def __init__(self, name: str, base: torch.nn.Module, tokens: torch.Tensor) -> None:
        self.device = "cpu" if name.endswith("cpu") else "sunrise"
        self.compiled = name.startswith("compiled")
        self.model = copy.deepcopy(base).to(self.device)
        self.call = torch.compile(self.model) if self.compiled else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.opt_step = torch.compile(self.opt.step) if self.compiled else self.opt.step
        self.ids = tokens.to(self.device)

    def forward(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.call(input_ids=self.ids)

    def train_step(self) -> float:
        self.model.train()
        loss = self.call(input_ids=self.ids, labels=self.ids).loss
        loss.backward()
        self.opt_step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()


def generation(base: torch.nn.Module, repeats: int) -> dict:
    prompt = torch.randint(1, 50257, (1, 8), generator=torch.Generator().manual_seed(1))
    kwargs = dict(max_new_tokens=32, do_sample=False, cache_implementation="static", pad_token_id=0)
    models = {"eager_cpu": copy.deepcopy(base).eval(), "sunrise": copy.deepcopy(base).to("sunrise").eval()}
    runs = {
        "eager_cpu": lambda: models["eager_cpu"].generate(prompt, disable_compile=True, **kwargs),
        "eager_sunrise": lambda: models["sunrise"].generate(prompt.to("sunrise"), disable_compile=True, **kwargs),
        "compiled_sunrise": lambda: models["sunrise"].generate(prompt.to("sunrise"), **kwargs),
    }
    tokens = {name: run().cpu().tolist() for name, run in runs.items()}  # warm-up, compiles
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(timed(run, "cpu" if name.endswith("cpu") else "sunrise"))
    result = {f"{name}_ms": statistics.median(s) * 1e3 for name, s in samples.items()}
    result["compiled"] = hasattr(models["sunrise"], "_compiled_call")
    result["same_tokens"] = tokens["compiled_sunrise"] == tokens["eager_cpu"] == tokens["eager_sunrise"]
    return result


def run_once(repeats: int, cold: bool) -> dict:
    if cold:
        torch._inductor.config.fx_graph_cache = False
        torch._functorch.config.enable_autograd_cache = False
        import os

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_compile_")
    base = build_model()
    tokens = torch.randint(1, 50257, (1, 128), generator=torch.Generator().manual_seed(0))
    ways = {name: Way(name, base, tokens) for name in WAYS}
    first: dict[str, dict[str, float]] = {}
    losses: dict[str, list[float]] = {name: [] for name in WAYS}
    for name, way in ways.items():  # first calls: compilation for the compiled ways
        first[name] = {"forward_s": timed(way.forward, way.device)}
        start = time.perf_counter()
        losses[name].append(way.train_step())
        first[name]["train_step_s"] = time.perf_counter() - start
    samples = {name: {"forward": [], "train_step": []} for name in WAYS}
    for _ in range(repeats):
        for name, way in ways.items():
            samples[name]["forward"].append(timed(way.forward, way.device))
            start = time.perf_counter()
            losses[name].append(way.train_step())
            samples[name]["train_step"].append(time.perf_counter() - start)
    result: dict[str, Any] = {
        name: {f"{k}_ms": statistics.median(v) * 1e3 for k, v in s.items()} | {"first": first[name]}
        for name, s in samples.items()
    }
    result["losses_match"] = all(
        abs(a - b) <= 1e-3 * abs(b) for a, b in zip(losses["compiled_sunrise"], losses["compiled_cpu"])
    )
    result["generation"] = generation(base, max(3, repeats // 2))
    return result


def print_result(r: dict) -> None:
    print("| way | forward 128 tokens (ms) | training step (ms) | first forward (s) | first training step (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name in WAYS:
        w = r[name]
        print(f"| {name.replace('_', ' ')} | {w['forward_ms']:.1f} | {w['train_step_ms']:.1f} "
              f"| {w['first']['forward_s']:.2f} | {w['first']['train_step_s']:.2f} |")
    cs, cc, es = r["compiled_sunrise"], r["compiled_cpu"], r["eager_sunrise"]
    for what in ("forward_ms", "train_step_ms"):
        print(f"{what[:-3]}: compiled sunrise / compiled CPU {cs[what] / cc[what]:.2f}, "
              f"compiled sunrise / eager sunrise {cs[what] / es[what]:.2f}")
    print(f"training losses of compiled sunrise and compiled CPU agree: {r['losses_match']}")
    g = r["generation"]
    print(f"static-cache generation of 32 tokens: eager CPU {g['eager_cpu_ms']:.0f} ms, eager sunrise "
          f"{g['eager_sunrise_ms']:.0f} ms, compiled sunrise {g['compiled_sunrise_ms']:.0f} ms "
          f"(compiled / eager sunrise {g['compiled_sunrise_ms'] / g['eager_sunrise_ms']:.2f}); "
          f"forward compiled: {g['compiled']}; tokens identical to eager CPU: {g['same_tokens']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1, help="fresh processes")
    parser.add_argument("--cold", action="store_true", help="an empty Inductor cache for the first calls")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs > 1:
        extra = ["--repeats", str(args.repeats)] + (["--cold"] if args.cold else [])
        rows = results_of_fresh_processes("benchmarks.bench_compile", extra, args.runs)
        print("| process | forward: compiled sunrise / compiled CPU | / eager sunrise | training step: compiled "
              "sunrise / compiled CPU | / eager sunrise | generation: compiled / eager sunrise | tokens identical |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for i, r in enumerate(rows):
            cs, cc, es, g = r["compiled_sunrise"], r["compiled_cpu"], r["eager_sunrise"], r["generation"]
            print(f"| {i + 1} | {cs['forward_ms'] / cc['forward_ms']:.2f} | {cs['forward_ms'] / es['forward_ms']:.2f} "
                  f"| {cs['train_step_ms'] / cc['train_step_ms']:.2f} | {cs['train_step_ms'] / es['train_step_ms']:.2f} "
                  f"| {g['compiled_sunrise_ms'] / g['eager_sunrise_ms']:.2f} | {g['same_tokens']} |")
        return
    r = run_once(args.repeats, args.cold)
    print_result(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f)


if __name__ == "__main__":
    main()
