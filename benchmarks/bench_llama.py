"""A real-size decoder in bfloat16: prefill and greedy decoding, sunrise beside CPU eager.

Run: .venv/bin/python -m benchmarks.bench_llama [--runs 3] [--new-tokens 32] [--prompt 256] [--threads]

A Llama-style model of 156 M parameters (hidden 1024, 8 layers, 16 query and
4 key/value heads, MLP 2816, vocabulary 32,000, untied embeddings), built from
its config with random weights (no download), in bfloat16, with HuggingFace's
`generate`. Prefill: one forward over a prompt of 256 tokens. Decoding: the
time per generated token, (generate(1 + N new) - generate(1 new)) / N, so that
the prompt's prefill cancels out. Tokens must be identical to CPU's.
--threads also prints, per generated token, how long each thread ran and how
long it waited for a core (benchmarks/_threads.py).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

import torch_sunrise  # noqa: F401  (registers the device)

from benchmarks._processes import results_of_fresh_processes
from benchmarks._settle import settle_before_cpu
from benchmarks._threads import describe, spent, thread_times


def build_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                         num_key_value_heads=4, vocab_size=32000, max_position_embeddings=1024,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def timed(fn, device: str) -> tuple[float, object]:
    if device == "cpu":
        settle_before_cpu()
    else:
        torch.sunrise.synchronize()
    start = time.perf_counter()
    out = fn()
    if device != "cpu":
        torch.sunrise.synchronize()
    return time.perf_counter() - start, out


def run_once(prompt_len: int, new_tokens: int, repeats: int, threads: bool = False) -> dict:
    """Each measurement alternates CPU and sunrise (this machine's speed drifts over seconds)."""
    cpu_model = build_model()
    models = {"cpu": cpu_model, "sunrise": copy.deepcopy(cpu_model).to("sunrise")}
    prompt = torch.randint(3, 32000, (1, prompt_len), generator=torch.Generator().manual_seed(0))
    ids = {d: prompt.to(d) for d in models}
    kwargs = dict(do_sample=False, pad_token_id=0, eos_token_id=None)
    samples = {d: {"prefill": [], "one": [], "many": []} for d in models}
    tokens = {}
    with torch.no_grad():
        for d, model in models.items():  # warm-up: first calls pay one-time setup
            model(ids[d])
            model.generate(ids[d], max_new_tokens=2, **kwargs)
        for _ in range(repeats):
            for d, model in models.items():
                samples[d]["prefill"].append(timed(lambda: model(ids[d]).logits, d)[0])
                samples[d]["one"].append(timed(lambda: model.generate(ids[d], max_new_tokens=1, **kwargs), d)[0])
                t, out = timed(lambda: model.generate(ids[d], max_new_tokens=1 + new_tokens, **kwargs), d)
                samples[d]["many"].append(t)
                tokens[d] = out.cpu().tolist()
    result = {}
    for d, s in samples.items():
        med = {k: statistics.median(v) for k, v in s.items()}
        result[d] = {"prefill_ms": med["prefill"] * 1e3, "token_ms": (med["many"] - med["one"]) / new_tokens * 1e3}
    result["same_tokens"] = tokens["cpu"] == tokens["sunrise"]
    if threads:
        with torch.no_grad():
            for d, model in models.items():
                spent_by = {}
                for n in (1, 1 + new_tokens):
                    before = thread_times()
                    timed(lambda: model.generate(ids[d], max_new_tokens=n, **kwargs), d)
                    spent_by[n] = spent(before, thread_times())
                result[d]["threads"] = describe(spent_by[1 + new_tokens], spent_by[1], new_tokens, "generated token")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1, help="fresh processes")
    parser.add_argument("--threads", action="store_true",
                        help="also print how the threads shared the cores during one more generate per device")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs > 1:
        rows = results_of_fresh_processes("benchmarks.bench_llama", ["--prompt", str(args.prompt), "--new-tokens",
                                          str(args.new_tokens), "--repeats", str(args.repeats)]
                                          + ["--threads"] * args.threads, args.runs)
        print("\n| process | prefill CPU / sunrise (ms) | ratio | decoding CPU / sunrise (ms per token) | ratio "
              "| tokens identical |\n| --- | --- | --- | --- | --- | --- |")
        for i, r in enumerate(rows):
            c, s = r["cpu"], r["sunrise"]
            print(f"| {i + 1} | {c['prefill_ms']:.1f} / {s['prefill_ms']:.1f} | {s['prefill_ms'] / c['prefill_ms']:.2f} "
                  f"| {c['token_ms']:.1f} / {s['token_ms']:.1f} | {s['token_ms'] / c['token_ms']:.2f} "
                  f"| {r['same_tokens']} |")
        if args.threads:
            for i, r in enumerate(rows):
                for d in ("cpu", "sunrise"):
                    print(f"process {i + 1}, {d}: {r[d]['threads']}")
        return
    r = run_once(args.prompt, args.new_tokens, args.repeats, args.threads)
    c, s = r["cpu"], r["sunrise"]
    print(f"prefill {args.prompt} tokens: cpu {c['prefill_ms']:.1f} ms, sunrise {s['prefill_ms']:.1f} ms, "
          f"ratio {s['prefill_ms'] / c['prefill_ms']:.2f}")
    print(f"decoding: cpu {c['token_ms']:.1f} ms/token, sunrise {s['token_ms']:.1f} ms/token, "
          f"ratio {s['token_ms'] / c['token_ms']:.2f}; tokens identical: {r['same_tokens']}")
    if args.threads:
        for d in ("cpu", "sunrise"):
            print(f"{d}: {r[d]['threads']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f)


if __name__ == "__main__":
    main()
