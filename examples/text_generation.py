"""Text generation with transformers on the sunrise device.

The same script is the CPU version with ``--device cpu``: the device string is
the only difference. Runs offline: by default it builds a tiny Llama from a
config (random weights, so the text is gibberish) and a word-level tokenizer
trained in memory; ``--model DIR`` uses a local checkpoint directory instead
(anything saved with ``save_pretrained``, tokenizer included). Greedy output is
identical on both devices; sampled output differs because, as on CUDA, the
device draws from its own (Philox) random generator.

    .venv/bin/python examples/text_generation.py                 # sunrise
    .venv/bin/python examples/text_generation.py --device cpu    # the CPU version
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, PreTrainedTokenizerFast, pipeline

CORPUS = [
    "the sun rises over the quiet sea",
    "a small model writes a few words",
    "the device runs the same code as the cpu",
    "every token is chosen by the model",
]


def tiny_model_and_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def synchronize(device: str) -> None:
    if torch.device(device).type != "cpu":
        torch.accelerator.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="sunrise", help='"sunrise" (default), "sunrise:1", "cpu", ...')
    parser.add_argument("--model", default=None, help="a local save_pretrained directory (default: a tiny Llama)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--prompt", action="append", help="prompt (repeatable)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    prompts = args.prompt or ["the sun rises over", "the device runs"]

    start = time.perf_counter()
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, device_map=args.device)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    else:
        model, tokenizer = tiny_model_and_tokenizer()
        model = model.to(args.device)
    synchronize(args.device)
    load_s = time.perf_counter() - start
    print(f"device: {model.device}  parameters: {sum(p.numel() for p in model.parameters()):,}  load: {load_s:.3f}s")

    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=args.device)

    timings = {}
    for label, kwargs in (
        ("greedy", dict(do_sample=False)),
        ("sampling", dict(do_sample=True, top_k=50, top_p=0.95, temperature=0.8)),
    ):
        generator(prompts[0], max_new_tokens=2, **kwargs)  # warm-up (first call pays one-time setup)
        torch.manual_seed(0)
        synchronize(args.device)
        start = time.perf_counter()
        outputs = generator(
            prompts,
            max_new_tokens=args.max_new_tokens,
            min_new_tokens=args.max_new_tokens,
            return_full_text=False,
            **kwargs,
        )
        synchronize(args.device)
        timings[label] = time.perf_counter() - start
        print(f"\n[{label}]")
        for prompt, output in zip(prompts, outputs):
            print(f"  {prompt!r} -> {output[0]['generated_text'].strip()!r}")

    new_tokens = len(prompts) * args.max_new_tokens
    print()
    for label, seconds in timings.items():
        print(f"{label:>8}: {seconds:.3f}s for {new_tokens} tokens ({new_tokens / seconds:.1f} tokens/s) on {args.device}")


if __name__ == "__main__":
    main()
