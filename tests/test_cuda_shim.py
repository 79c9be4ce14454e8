"""CUDA code on sunrise unchanged: ``import torch_sunrise.transfer_to_sunrise`` and the
``sunrise-run`` launcher (torch_sunrise/transfer_to_sunrise.py). The shim changes torch for the
whole process, so every check runs in a subprocess; results are compared with the same script
run on the CPU (no shim: this machine has no CUDA)."""
from __future__ import annotations

import io
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import SUBPROCESS_TIMEOUT_S, _clean_env, describe

SCRIPTS = Path(__file__).parent / "cuda_scripts"
SHIM = "import torch_sunrise.transfer_to_sunrise\n"


def _run(args: list[str], cwd: Path | None = None, env: dict | None = None):
    import subprocess

    return subprocess.run(args, capture_output=True, text=True, timeout=3 * SUBPROCESS_TIMEOUT_S,
                          env=_clean_env(env), cwd=cwd)


def _results(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("loss", "weight"))]


def _sunrise_run() -> str:
    exe = Path(sys.executable).parent / "sunrise-run"
    if not exe.exists():
        found = shutil.which("sunrise-run")
        assert found, "the sunrise-run launcher is not installed (pip install -e . installs it)"
        return found
    return str(exe)


def _values(lines: list[str]) -> list[float]:
    return [float.fromhex(line.split()[-1]) for line in lines]


@pytest.mark.parametrize("amp", ["0", "1"], ids=["float32", "autocast-bf16"])
def test_cnn_training_script_runs_unmodified_and_matches_cpu(amp: str) -> None:
    script = SCRIPTS / "cnn_amp_training.py"
    env = {"CNN_AMP": amp}
    cpu = _run([sys.executable, str(script)], env=env)
    assert cpu.returncode == 0, describe(cpu)
    assert "device" not in cpu.stdout  # no CUDA here: the CPU path
    launched = _run([_sunrise_run(), str(script)], env=env)
    assert launched.returncode == 0, describe(launched)
    assert "device sunrise:0" in launched.stdout, describe(launched)
    assert launched.stderr.count("transfer_to_sunrise is active") == 1  # said once
    imported = _run([sys.executable, "-c", SHIM + f"exec(open({str(script)!r}).read())"], env=env)
    assert imported.returncode == 0, describe(imported)
    expected = _results(cpu.stdout)
    assert len(expected) > 4
    assert _results(imported.stdout) == _results(launched.stdout)
    if amp == "0":
        assert _results(launched.stdout) == expected  # CPU's bits
    else:
        # autocast follows CUDA's policy on sunrise (the CPU's differs: which ops run in bfloat16)
        torch.testing.assert_close(_values(_results(launched.stdout)), _values(expected), rtol=3e-2, atol=1e-2)


def test_sunrise_run_passes_arguments_and_runs_modules(tmp_path: Path) -> None:
    script = tmp_path / "args.py"
    script.write_text("import sys, torch\nprint(sys.argv[1:], torch.ones(2, device='cuda').device)\n")
    proc = _run([_sunrise_run(), str(script), "--lr", "0.1"])
    assert proc.returncode == 0, describe(proc)
    assert "['--lr', '0.1'] sunrise:0" in proc.stdout
    (tmp_path / "mod_main.py").write_text("import torch\nprint(torch.cuda.current_device(), torch.cuda.device_count())\n")
    proc = _run([_sunrise_run(), "-m", "mod_main"], cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split() == ["0", str(torch.sunrise.device_count())]


def _cuda_tagged_checkpoint(path: Path, state: dict) -> None:
    """A checkpoint as torch.save writes it on a CUDA machine: storages tagged 'cuda:0'."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            out.writestr(item, data)


def test_checkpoint_saved_on_cuda_loads_on_sunrise(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    weights = torch.randn(5, 3)
    _cuda_tagged_checkpoint(path, {"w": weights, "step": 7})
    plain = _run([sys.executable, "-c", f"import torch; torch.load({str(path)!r})"])
    assert plain.returncode != 0 and "CUDA" in plain.stderr  # what a CPU-only machine says
    code = SHIM + (f"import torch\nck = torch.load({str(path)!r})\nprint(ck['w'].device, ck['step'])\n"
                   f"print(ck['w'].cpu().numpy().tobytes().hex())\n"
                   f"print(torch.load({str(path)!r}, map_location='cuda:1')['w'].device)\n")
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "sunrise:0 7"
    assert lines[1] == weights.numpy().tobytes().hex()
    assert lines[2] == "sunrise:1"


def test_torch_cuda_names_devices_and_generators() -> None:
    code = SHIM + """
import torch
assert torch.cuda.is_available() and torch.cuda.device_count() == torch.sunrise.device_count()
assert torch.cuda.get_device_name() == torch.sunrise.get_device_name()
x = torch.zeros(3, device="cuda:1")
assert x.device == torch.device("sunrise:1") and x.is_cuda
x0 = torch.zeros(3, device="cuda")
assert torch.ones(2).to(torch.device("cuda", 0)).device == torch.device("sunrise:0")
assert torch.randn(2, device=torch.device("cuda")).new_zeros(2, device="cuda:1").device.index == 1
g = torch.Generator(device="cuda")
assert g.device.type == "sunrise" and isinstance(g, torch.Generator)
assert isinstance(torch.default_generator, torch.Generator)
with torch.device("cuda"):
    assert torch.empty(1).device.type == "sunrise"
s = torch.cuda.Stream()
with torch.cuda.stream(s):
    assert torch.cuda.current_stream() == s
torch.cuda.manual_seed(0)
torch.cuda.empty_cache()
assert torch.cuda.memory_stats()["allocated_bytes.all.current"] > 0
with torch.cuda.amp.autocast():
    assert torch.mm(x0.view(3, 1), x0.view(1, 3)).dtype == torch.float16
assert isinstance(torch.cuda.amp.GradScaler(), torch.amp.GradScaler)
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    (x0 + 1).sum().item()
assert prof.key_averages().table().count("sunrise::") > 0
with torch.cuda.nvtx.range("step"):
    pass
g2 = torch.cuda.CUDAGraph()
assert type(g2).__name__ == "SunriseGraph"
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
torch.cuda._sleep(20_000_000)
end.record()
end.synchronize()
assert start.elapsed_time(end) >= 19
torch.cuda.set_sync_debug_mode("error")
try:
    x0.sum().item()
    raise AssertionError("set_sync_debug_mode did not reach sunrise")
except RuntimeError as e:
    assert "synchronizing sunrise operation" in str(e)
finally:
    torch.cuda.set_sync_debug_mode(0)
m = torch.nn.Linear(2, 2).cuda()
assert next(m.parameters()).device.type == "sunrise"
loader = torch.utils.data.DataLoader(torch.arange(4.0), batch_size=2, pin_memory=True, pin_memory_device="cuda")
assert all(batch.is_pinned() for batch in loader)
print("ok")
"""
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", describe(proc)


def test_cuda_only_callers_get_the_truth() -> None:
    code = SHIM + """
import sys, types, torch
assert torch.cuda.is_available()
fake = types.ModuleType("triton.runtime.driver")
exec("import torch\\ndef probe():\\n    return torch.cuda.is_available()", fake.__dict__)
sys.modules["triton.runtime.driver"] = fake
assert fake.probe() is False
assert torch.version.cuda is None and not torch.backends.cudnn.is_available()
print("ok")
"""
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", describe(proc)


def test_compiled_code_with_cuda_devices() -> None:
    code = SHIM + """
import torch
@torch.compile
def f(x):
    return (torch.ones(3, device="cuda") + x.cuda()) * 2
x = torch.arange(3.0)
out = f(x)
assert out.device.type == "sunrise"
assert torch.equal(out.cpu(), (torch.ones(3) + x) * 2)
print("ok")
"""
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", describe(proc)


def test_cpu_scripts_are_untouched_without_the_shim() -> None:
    proc = _run([sys.executable, "-c", "import torch, torch_sunrise\n"
                 "assert not torch.cuda.is_available() and not hasattr(torch.Generator, '__sunrise_wrapped__')\n"
                 "assert torch.zeros.__module__ is None or 'sunrise' not in str(torch.zeros.__module__)\n"
                 "assert 'torch_sunrise.transfer_to_sunrise' not in __import__('sys').modules\n"
                 "print(torch.zeros(2).device)"])
    assert proc.returncode == 0 and proc.stdout.strip() == "cpu", describe(proc)


def test_sunrise_amp_mirrors_cuda_amp() -> None:
    x = torch.randn(4, 4, device="sunrise")
    with pytest.warns(FutureWarning, match="torch.amp.autocast"):
        ctx = torch.sunrise.amp.autocast()
    with ctx:
        got = torch.mm(x, x)
    with torch.autocast("cpu", dtype=torch.float16):
        expected = torch.mm(x.cpu(), x.cpu())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=0)
    with pytest.warns(FutureWarning, match="torch.amp.GradScaler"):
        scaler = torch.sunrise.amp.GradScaler(init_scale=8.0)
    assert scaler.get_scale() == 8.0 and scaler._device == "sunrise"
    with pytest.warns(FutureWarning, match="custom_fwd"):
        decorate = torch.sunrise.amp.custom_fwd(cast_inputs=torch.float32)
    assert callable(decorate)


HF_SCRIPT = """
import sys, torch, transformers
path, mode = sys.argv[1], sys.argv[2]
if mode == "save":
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                                  pad_token_id=0)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["a b c d e f g h"], trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(path)
    sys.exit(0)
cuda = torch.cuda.is_available()
model = transformers.AutoModelForCausalLM.from_pretrained(path)
# a pipeline on "GPU 0", as CUDA code writes it
pipe = transformers.pipeline("text-generation", model=model, tokenizer=path, device=0 if cuda else -1)
generated = pipe("a b c", max_new_tokens=8, do_sample=False, return_tensors=True)
print("device", pipe.device.type if cuda else "cpu")
print("tokens", list(generated[0]["generated_token_ids"]))
# a Trainer run: TrainingArguments picks the GPU when there is one
data = [{"input_ids": torch.arange(i, i + 16) % 128, "labels": torch.arange(i, i + 16) % 128} for i in range(8)]
args = transformers.TrainingArguments(output_dir=path + "/out", per_device_train_batch_size=4, max_steps=3,
                                      learning_rate=1e-3, logging_steps=1, report_to=[], save_strategy="no",
                                      use_cpu=not cuda, seed=0, data_seed=0, dataloader_num_workers=0)
trainer = transformers.Trainer(model=model, args=args, train_dataset=data)
trainer.train()
print("trainer_device", next(trainer.model.parameters()).device.type)
print("losses", [round(h["loss"], 6) for h in trainer.state.log_history if "loss" in h])
# loading straight onto "the GPU"
placed = transformers.AutoModelForCausalLM.from_pretrained(path, device_map="cuda" if cuda else None).eval()
ids = torch.tensor([[3, 1, 4, 1, 5]], device=placed.device)
with torch.no_grad():
    print("logits", placed(ids).logits.float().sum().item().hex(), placed.device.type)
"""


def test_huggingface_pipeline_on_device_0_and_trainer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    script = tmp_path / "hf.py"
    script.write_text(HF_SCRIPT)
    model_dir = str(tmp_path / "model")
    saved = _run([sys.executable, str(script), model_dir, "save"])
    assert saved.returncode == 0, describe(saved)
    cpu = _run([sys.executable, str(script), model_dir, "run"])
    assert cpu.returncode == 0, describe(cpu)
    launched = _run([_sunrise_run(), str(script), model_dir, "run"])
    assert launched.returncode == 0, describe(launched)
    got = dict(line.split(" ", 1) for line in launched.stdout.splitlines() if " " in line)
    expected = dict(line.split(" ", 1) for line in cpu.stdout.splitlines() if " " in line)
    assert got["device"] == "sunrise" and got["trainer_device"] == "sunrise", launched.stdout
    assert got["tokens"] == expected["tokens"]
    assert got["losses"] == expected["losses"]
    assert got["logits"].split()[0] == expected["logits"].split()[0] and got["logits"].endswith("sunrise")


def test_nccl_backend_means_sunrise_collectives(tmp_path: Path) -> None:
    code = SHIM + f"""
import torch, torch.distributed as dist
dist.init_process_group(backend="nccl", init_method="file://{tmp_path}/store", rank=0, world_size=1)
assert dist.get_backend() == "sccl"
x = torch.arange(4.0, device="cuda")
dist.all_reduce(x)
torch.cuda.synchronize()
assert x.device.type == "sunrise" and torch.equal(x.cpu(), torch.arange(4.0))
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2).cuda(), device_ids=[torch.device("cuda", 0)],
                                                  output_device=torch.device("cuda", 0))
model(x).sum().backward()
assert next(model.parameters()).grad.device.type == "sunrise"
dist.destroy_process_group()
print("ok")
"""
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", describe(proc)
