"""Graph replay on sunrise beside eager CPU and eager sunrise: a small MLP and GPT-2 greedy decoding.

Run: .venv/bin/python -m benchmarks.bench_graphs [--repeats 7] [--runs 1]

* MLP 8x64 (8 x (Linear 64->64, ReLU)), batch 32, forward under ``no_grad``; each call is followed by
  a synchronization (the loop that reads its result every step): eager CPU, eager sunrise, and one
  ``SunriseGraph.replay()`` of the captured forward.
* GPT-2 with 6 layers of width 512 (8 heads, vocabulary 50,257), built from its config: greedy decoding
  with a static KV cache after an 8-token prompt, time per generated token, reading each token on the
  host (``.item()``) as a decoding loop does:
  - the decoding loop by hand (the docs/huggingface.md recipe): eager CPU, eager sunrise, and the
    decoding step captured once and replayed per token on sunrise;
  - ``model.generate()``: eager CPU, and on sunrise with transformers' default for a static cache
    (the decoding forward compiled, ``mode="reduce-overhead"``, which on sunrise replays graphs).
  Tokens are compared with eager CPU's.

Medians over ``--repeats`` rounds; the ways alternate within each round (this machine's speed drifts
over seconds).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Any, Callable

import torch

import torch_sunrise  # noqa: F401  (registers the device)

from benchmarks._processes import results_of_fresh_processes

PROMPT = 8
NEW_TOKENS = 32


def sync(device: str) -> None:
    if device != "cpu":
        torch.sunrise.synchronize()


def per_call_us(fn: Callable[[], Any], device: str, calls: int) -> float:
    """Median time of one call followed by a synchronization (microseconds)."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def mlp(repeats: int) -> dict:
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        layers += [torch.nn.Linear(64, 64), torch.nn.ReLU()]
    cpu_model = torch.nn.Sequential(*layers).eval()
    sunrise_model = copy.deepcopy(cpu_model).to("sunrise")
    x = torch.randn(32, 64)
    xs = x.to("sunrise")
    graph = torch.sunrise.SunriseGraph()
    with torch.no_grad():
        sunrise_model(xs)  # warm-up before capture
        with torch.sunrise.graph(graph):
            static_out = sunrise_model(xs)
        ways = {
            "eager_cpu": (lambda: cpu_model(x), "cpu"),
            "eager_sunrise": (lambda: sunrise_model(xs), "sunrise"),
            "graph_sunrise": (graph.replay, "sunrise"),
        }
        samples: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(repeats):
            for name, (fn, device) in ways.items():
                per_call_us(fn, device, 50)
                samples[name].append(per_call_us(fn, device, 1000))
        graph.replay()
        same = torch.equal(static_out.cpu(), cpu_model(x))
    result = {f"{name}_us": statistics.median(s) for name, s in samples.items()}
    result["same_as_cpu"] = same
    result["nodes"] = graph.node_count()
    return result


def build_gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=6, n_embd=512, n_head=8, n_positions=512, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def decode_by_hand(model: torch.nn.Module, prompt: torch.Tensor, device: str, graph: bool) -> tuple[list[int], float]:
    """Greedy decoding with a static cache (the docs/huggingface.md recipe when ``graph``);
    returns the tokens and the median time per token after the first (ms)."""
    from transformers import StaticCache

    max_len = PROMPT + NEW_TOKENS
    with torch.no_grad():
        cache = StaticCache(config=model.config, max_cache_len=max_len)
        mask = torch.ones(1, max_len, dtype=torch.long, device=device)
        ids = prompt.to(device)
        logits = model(ids, attention_mask=mask[:, :PROMPT], past_key_values=cache, use_cache=True).logits
        token = logits[:, -1:].argmax(-1)
        tokens = [token.item()]
        step_times = []
        if graph:
            step = torch.sunrise.SunriseGraph()
            with torch.sunrise.graph(step):  # recorded, not run: the cache does not advance here
                logits = model(token, attention_mask=mask, past_key_values=cache, use_cache=True).logits
                token.copy_(logits[:, -1:].argmax(-1))
            for _ in range(NEW_TOKENS - 1):
                start = time.perf_counter()
                step.replay()
                tokens.append(token.item())
                step_times.append(time.perf_counter() - start)
        else:
            for i in range(NEW_TOKENS - 1):
                start = time.perf_counter()
                logits = model(token, attention_mask=mask[:, :PROMPT + 1 + i], past_key_values=cache,
                               use_cache=True).logits
                token = logits[:, -1:].argmax(-1)
                tokens.append(token.item())
                step_times.append(time.perf_counter() - start)
    return tokens, statistics.median(step_times) * 1e3


def gpt2(repeats: int) -> dict:
    base = build_gpt2()
    prompt = torch.randint(1, 50257, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    cpu_model = copy.deepcopy(base)
    sunrise_model = copy.deepcopy(base).to("sunrise")
    by_hand = {
        "eager_cpu": lambda: decode_by_hand(cpu_model, prompt, "cpu", False),
        "eager_sunrise": lambda: decode_by_hand(sunrise_model, prompt, "sunrise", False),
        "graph_sunrise": lambda: decode_by_hand(sunrise_model, prompt, "sunrise", True),
    }

    def generate(model: torch.nn.Module, device: str, new: int, **kwargs: Any) -> torch.Tensor:
        with torch.no_grad():
            return model.generate(prompt.to(device), attention_mask=torch.ones_like(prompt).to(device),
                                  max_new_tokens=new, do_sample=False, cache_implementation="static",
                                  pad_token_id=0, **kwargs).cpu()

    generates = {
        "generate_eager_cpu": lambda new: generate(cpu_model, "cpu", new, disable_compile=True),
        "generate_sunrise": lambda new: generate(sunrise_model, "sunrise", new),
    }
    tokens = {name: run()[0] for name, run in by_hand.items()}
    for name, run in generates.items():  # warm-up (the sunrise one compiles and captures)
        run(NEW_TOKENS)
        tokens[name] = run(NEW_TOKENS)[0, PROMPT:].tolist()
    samples: dict[str, list[float]] = {name: [] for name in [*by_hand, *generates]}
    for _ in range(repeats):
        for name, run in by_hand.items():
            samples[name].append(run()[1])
        for name, run in generates.items():
            start = time.perf_counter()
            run(1)
            first = time.perf_counter() - start
            start = time.perf_counter()
            run(NEW_TOKENS)
            samples[name].append((time.perf_counter() - start - first) / (NEW_TOKENS - 1) * 1e3)
    result: dict[str, Any] = {f"{name}_ms": statistics.median(s) for name, s in samples.items()}
    result["same_tokens"] = all(t == tokens["eager_cpu"] for t in tokens.values())
    return result


def run_once(repeats: int) -> dict:
    return {"mlp": mlp(repeats), "gpt2": gpt2(repeats)}


def print_result(r: dict) -> None:
    m, g = r["mlp"], r["gpt2"]
    print("| case | eager CPU | eager sunrise | graph replay on sunrise | replay / eager CPU |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| MLP 8x64, batch 32, forward + sync (µs) | {m['eager_cpu_us']:.1f} | {m['eager_sunrise_us']:.1f} "
          f"| {m['graph_sunrise_us']:.1f} ({m['nodes']} nodes) | {m['graph_sunrise_us'] / m['eager_cpu_us']:.2f} |")
    print(f"| GPT-2 6x512 greedy decoding by hand, per token (ms) | {g['eager_cpu_ms']:.2f} "
          f"| {g['eager_sunrise_ms']:.2f} | {g['graph_sunrise_ms']:.2f} "
          f"| {g['graph_sunrise_ms'] / g['eager_cpu_ms']:.2f} |")
    print(f"| GPT-2 6x512 `generate()`, per token (ms) | {g['generate_eager_cpu_ms']:.2f} | "
          f"| {g['generate_sunrise_ms']:.2f} | {g['generate_sunrise_ms'] / g['generate_eager_cpu_ms']:.2f} |")
    print(f"MLP replay bitwise equal to CPU: {m['same_as_cpu']}; GPT-2 tokens identical to eager CPU in every "
          f"way: {g['same_tokens']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1, help="fresh processes")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs > 1:
        rows = results_of_fresh_processes("benchmarks.bench_graphs", ["--repeats", str(args.repeats)], args.runs)
        print("| process | MLP replay / eager CPU | decoding by hand: replay / eager CPU | generate(): sunrise / "
              "eager CPU | tokens identical |")
        print("| --- | --- | --- | --- | --- |")
        for i, r in enumerate(rows):
            m, g = r["mlp"], r["gpt2"]
            print(f"| {i + 1} | {m['graph_sunrise_us'] / m['eager_cpu_us']:.2f} "
                  f"| {g['graph_sunrise_ms'] / g['eager_cpu_ms']:.2f} "
                  f"| {g['generate_sunrise_ms'] / g['generate_eager_cpu_ms']:.2f} | {g['same_tokens']} |")
        return
    r = run_once(args.repeats)
    print_result(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f)


if __name__ == "__main__":
    main()
