"""Issue #4: the training step of real model families is device work from end to end.

GPT-2, Llama and BERT, built from small configs, run forward, backward and an
AdamW step on sunrise with the CPU fallback forbidden (``SUNRISE_FALLBACK=error``:
an op that would synchronize raises) and no op on the fallback's queued path either. Logits, loss, every gradient and every
updated parameter are compared with the same step on the CPU. Dropout is off
for the comparison (the device's Philox stream differs from the CPU's generator);
a second run with dropout on only checks that nothing falls back.
"""

from __future__ import annotations

import copy
import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                reason="needs the package transformers (not installed)")

VOCAB = 128


def _model(family: str, dropout: float) -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    if family == "gpt2":
        cfg = tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64, resid_pdrop=dropout,
                            embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0)
        return tf.GPT2LMHeadModel(cfg)
    if family == "llama":
        cfg = tf.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=VOCAB, attention_dropout=dropout, bos_token_id=0,
                             eos_token_id=0, pad_token_id=0)
        return tf.LlamaForCausalLM(cfg)
    cfg = tf.BertConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                        vocab_size=VOCAB, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return tf.BertForMaskedLM(cfg)


def _step(model: torch.nn.Module, device: str) -> dict:
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (2, 12), generator=gen).to(device)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padding: exercises the attention mask path
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    before = {n: p.detach().cpu() for n, p in model.named_parameters()}
    opt.step()
    opt.zero_grad()
    return {"logits": out.logits.detach().cpu(), "loss": out.loss.detach().cpu(), "grads": grads,
            "before": before, "params": {n: p.detach().cpu() for n, p in model.named_parameters()}}


def _adamw_on_cpu(params: dict, grads: dict) -> dict:
    """The same AdamW step, on the CPU, from the given parameters and gradients."""
    cpu = {n: torch.nn.Parameter(p.clone()) for n, p in params.items()}
    for n, p in cpu.items():
        p.grad = grads.get(n)
    torch.optim.AdamW(list(cpu.values()), lr=1e-2).step()
    return {n: p.detach() for n, p in cpu.items()}


def assert_logits_and_grads_close(got: dict, expected: dict) -> None:
    """Logits, loss and every gradient of a training step (``_step``'s dict) against the CPU's."""
    assert_close(got["logits"], expected["logits"])
    assert_close(got["loss"], expected["loss"])
    assert got["grads"].keys() == expected["grads"].keys() and got["grads"]
    for name in expected["grads"]:
        assert_close(got["grads"][name], expected["grads"][name], msg=lambda m, n=name: f"grad of {n}: {m}")


class _fallback_error:  # noqa: N801 - a context manager
    def __enter__(self):
        self.mode = torch_sunrise.get_fallback_mode()
        torch_sunrise.set_fallback_mode("error")
        torch_sunrise.reset_fallback_stats()

    def __exit__(self, *exc):
        torch_sunrise.set_fallback_mode(self.mode)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_training_step_without_fallback_matches_cpu(family: str) -> None:
    model = _model(family, dropout=0.0)
    expected = _step(copy.deepcopy(model), "cpu")
    with _fallback_error():
        got = _step(model, "sunrise")
        torch.sunrise.synchronize()
    # Every op has a sunrise kernel: neither fallback path ran.
    assert torch_sunrise.fallback_stats() == {} and torch_sunrise.queued_fallback_stats() == {}
    assert_logits_and_grads_close(got, expected)
    # The optimizer step is compared from the same gradients: Adam normalises
    # each gradient element, so where one is pure rounding noise (the bias of
    # attention keys) a last-bit difference of summation order would move the
    # parameter by up to lr.
    stepped = _adamw_on_cpu(got["before"], got["grads"])
    for name, value in stepped.items():
        assert_close(got["params"][name], value, msg=lambda m, n=name: f"{n} after AdamW: {m}")


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_training_step_with_dropout_has_no_fallback(family: str) -> None:
    with _fallback_error():
        result = _step(_model(family, dropout=0.1), "sunrise")
        torch.sunrise.synchronize()
    assert torch.isfinite(result["loss"])
    assert torch_sunrise.fallback_stats() == {} and torch_sunrise.queued_fallback_stats() == {}
