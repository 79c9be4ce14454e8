"""torch.compile of real model families on sunrise (issue #13), against the same compiled step on the CPU.

GPT-2, Llama and BERT from small configs: the model compiled with the default backend (Inductor),
forward, backward, and an AdamW step compiled too, with the CPU fallback forbidden on sunrise. Every
gradient and updated parameter is compared with the compiled step on the CPU. GPT-2 runs by default;
``SUNRISE_COMPILE_MODELS=1`` adds Llama and BERT (each compiles for a minute on two cores). Dropout is
off for the comparison (the device's Philox stream is not the CPU's generator); the GPT-2 run with
dropout checks that nothing falls back. HuggingFace's static-cache generation compiles the decoding
forward on sunrise as on CUDA (torch_sunrise.integrations.huggingface) and gives eager CPU's tokens.
"""

from __future__ import annotations

import copy
import importlib.util
import os

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import no_fallback
from test_no_fallback_models import VOCAB, _model, assert_logits_and_grads_close

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                reason="needs the package transformers (not installed)")

_ALL = os.environ.get("SUNRISE_COMPILE_MODELS") == "1"
_FAMILIES = ["gpt2"] + (["llama", "bert"] if _ALL else [])


def _compiled_step(model: torch.nn.Module, device: str) -> dict:
    torch._dynamo.reset()
    model = model.to(device).train()
    compiled = torch.compile(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    step = torch.compile(opt.step)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (2, 12), generator=gen).to(device)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    out = compiled(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    step()
    return {"logits": out.logits.detach().cpu(), "loss": out.loss.detach().cpu(), "grads": grads,
            "params": {n: p.detach().cpu() for n, p in model.named_parameters()}}


@pytest.mark.parametrize("family", _FAMILIES)
def test_compiled_training_step_matches_compiled_cpu(family: str) -> None:
    model = _model(family, dropout=0.0)
    expected = _compiled_step(copy.deepcopy(model), "cpu")
    with no_fallback():
        got = _compiled_step(model, "sunrise")
        torch.sunrise.synchronize()
    assert torch_sunrise.fallback_stats() == {} and torch_sunrise.queued_fallback_stats() == {}
    assert_logits_and_grads_close(got, expected)
    # Adam normalises each gradient element: where one is rounding noise (attention keys' bias),
    # a last-bit difference moves the parameter by up to lr.
    for name in expected["params"]:
        assert_close(got["params"][name], expected["params"][name], atol=1.5e-2, rtol=0,
                     msg=lambda m, n=name: f"{n} after AdamW: {m}")


def test_compiled_training_with_dropout_has_no_fallback() -> None:
    with no_fallback():
        result = _compiled_step(_model("gpt2", dropout=0.1), "sunrise")
        torch.sunrise.synchronize()
    assert torch.isfinite(result["loss"])
    assert torch_sunrise.fallback_stats() == {} and torch_sunrise.queued_fallback_stats() == {}


@pytest.mark.parametrize("family", ["llama"] + (["gpt2"] if _ALL else []))
def test_static_cache_generation_compiles_and_gives_cpu_tokens(family: str) -> None:
    torch._dynamo.reset()
    model = _model(family, dropout=0.0).eval()
    ids = torch.randint(1, VOCAB, (1, 8), generator=torch.Generator().manual_seed(2))
    expected = model.generate(ids, max_new_tokens=16, do_sample=False, cache_implementation="static")
    model = model.to("sunrise")
    with no_fallback():
        got = model.generate(ids.to("sunrise"), max_new_tokens=16, do_sample=False, cache_implementation="static")
    assert hasattr(model, "_compiled_call"), "transformers did not compile the decoding forward on sunrise"
    assert got.cpu().tolist() == expected.tolist()
