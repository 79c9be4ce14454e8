"""Fine-tune a small causal language model with the transformers Trainer on sunrise.

Builds a tiny Llama from a config and a word-level tokenizer trained in memory
(offline), fine-tunes it for a few steps on a toy corpus -- fully, or with a
LoRA adapter (``--lora``, needs peft) -- and in mixed precision with ``--bf16``
or ``--fp16``, then generates from the tuned model.

The same script is the CPU version with ``--device cpu``. With the Trainer the
device is chosen the way it is on a CUDA machine: ``TrainingArguments`` picks
the accelerator (sunrise, through ``torch_sunrise.integrations.huggingface``)
unless ``use_cpu=True``.

    .venv/bin/python examples/fine_tuning.py                      # sunrise
    .venv/bin/python examples/fine_tuning.py --bf16 --lora        # sunrise, bf16 autocast, LoRA
    .venv/bin/python examples/fine_tuning.py --device cpu         # the CPU version
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    DataCollatorForLanguageModeling,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

CORPUS = [
    "the sunrise device runs pytorch code unchanged",
    "the trainer moves the model to the device",
    "mixed precision uses bfloat16 or float16 autocast",
    "a lora adapter trains a few small matrices",
    "the loss goes down as the model learns the corpus",
    "every example differs from the cpu version only in the device",
] * 8


def tokenizer_and_model():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return tokenizer, AutoModelForCausalLM.from_config(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="sunrise", help='"sunrise" (default) or "cpu"')
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) instead of all weights")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true")
    precision.add_argument("--fp16", action="store_true")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    tokenizer, model = tokenizer_and_model()
    if args.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    dataset = [tokenizer(text) for text in CORPUS]

    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            use_cpu=(args.device == "cpu"),  # otherwise the accelerator: sunrise
            max_steps=args.steps,
            per_device_train_batch_size=8,
            learning_rate=5e-3 if args.lora else 2e-3,
            bf16=args.bf16,
            fp16=args.fp16,
            logging_steps=max(1, args.steps // 6),
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
        )
        print(f"TrainingArguments.device = {training_args.device}, mixed precision = {training_args.mixed_precision}")
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        )
        start = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - start

    losses = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    print("step  loss")
    for step, loss in losses:
        print(f"{step:>4}  {loss:.4f}")

    model = trainer.model.eval()
    prompt = tokenizer("the sunrise device", return_tensors="pt").to(training_args.device)
    start = time.perf_counter()
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    generate_s = time.perf_counter() - start
    print(f"\ngenerated: {tokenizer.decode(output[0], skip_special_tokens=True)!r}")
    print(f"\ntrain {args.steps} steps: {train_s:.3f}s ({train_s / args.steps * 1000:.1f} ms/step, "
          f"final loss {result.training_loss:.4f}); generate: {generate_s:.3f}s; device {training_args.device}")


if __name__ == "__main__":
    main()
