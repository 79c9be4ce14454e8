"""torch.distributed on sunrise (issue #14): the "sccl" c10d backend.

Every collective on sunrise tensors is compared, bitwise, with the same collective on CPU tensors
over gloo, in one process group ``"cpu:gloo,sunrise:sccl"`` (2 and 3 ranks; ranks beyond the
device count share a device index, each process having its own emulated devices). DDP and FSDP2
train against single-process training on the full batch. Ranks run as fresh processes on loopback
(tests/ranks.py), every wait bounded, all killed when one fails.
"""

from __future__ import annotations

import os

import pytest

from ranks import describe, run_ranks

PRELUDE = """
import os, sys, datetime
import torch, torch_sunrise
import torch.distributed as dist

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dev = torch.device("sunrise", rank % torch.sunrise.device_count())
torch.sunrise.set_device(dev)
"""

COLLECTIVES = PRELUDE + """
dist.init_process_group("cpu:gloo,sunrise:sccl", timeout=datetime.timedelta(seconds=60))
assert dist.get_backend() == "cpu:gloo,sunrise:sccl"

def both(fn, *cpu_tensors):
    # fn on sunrise copies and on CPU clones; results compared bitwise.
    s = fn(*[t.to(dev) for t in cpu_tensors])
    c = fn(*[t.clone() for t in cpu_tensors])
    return s, c

def same(name, got, expected):
    if isinstance(got, (list, tuple)):
        assert len(got) == len(expected), name
        for g, e in zip(got, expected):
            same(name, g, e)
        return
    assert got.device == dev, (name, got.device)
    assert torch.equal(got.cpu(), expected), (name, got.cpu(), expected)

g = torch.Generator().manual_seed(rank)
x = torch.randn(6, 5, generator=g)
ints = torch.randint(-50, 50, (7,), generator=g)

for op in ("SUM", "PRODUCT", "MIN", "MAX", "AVG"):
    def f(t, op=op):
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        return t
    same(f"all_reduce {op}", *both(f, x))
    if op != "AVG":
        same(f"all_reduce {op} int64", *both(f, ints))
    print("OK all_reduce", op)

t = x.to(dev)
dist.all_reduce(t, op=dist._make_nccl_premul_sum(0.5))
c = x.clone() * 0.5
dist.all_reduce(c)
same("premul_sum", t, c)
print("OK premul_sum")

def f(t):
    dist.broadcast(t, src=world - 1)
    return t
same("broadcast", *both(f, x)); print("OK broadcast")

def f(t):
    dist.reduce(t, dst=0)
    return t
s, c = both(f, x)
if rank == 0:
    same("reduce", s, c)
print("OK reduce")

def f(t):
    out = [torch.empty_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return out
same("all_gather", *both(f, x)); print("OK all_gather")

def f(t):
    out = torch.empty((world * t.shape[0],) + t.shape[1:], dtype=t.dtype, device=t.device)
    dist.all_gather_into_tensor(out, t)
    return out
same("all_gather_into_tensor", *both(f, x)); print("OK all_gather_into_tensor")

def f(t):
    out = torch.empty(t.shape[0] // world, dtype=t.dtype, device=t.device)
    dist.reduce_scatter_tensor(out, t)
    return out
same("reduce_scatter_tensor", *both(f, torch.randn(world * 4, generator=g))); print("OK reduce_scatter_tensor")

def f(*ins):
    out = torch.empty_like(ins[0])
    dist.reduce_scatter(out, list(ins))
    return out
same("reduce_scatter", *both(f, *[torch.randn(3, generator=g) for _ in range(world)])); print("OK reduce_scatter")

# Uneven splits: rank r sends r + 1 + j elements to rank j.
in_splits = [rank + 1 + j for j in range(world)]
out_splits = [j + 1 + rank for j in range(world)]
def f(t):
    out = torch.empty(sum(out_splits), dtype=t.dtype, device=t.device)
    dist.all_to_all_single(out, t, out_splits, in_splits)
    return out
same("all_to_all_single", *both(f, torch.randn(sum(in_splits), generator=g))); print("OK all_to_all_single")

def f(*ins):
    outs = [torch.empty_like(ins[0]) for _ in range(world)]
    dist.all_to_all(outs, list(ins))
    return outs
same("all_to_all", *both(f, *[torch.randn(2, generator=g) for _ in range(world)])); print("OK all_to_all")

def f(t):
    out = [torch.empty_like(t) for _ in range(world)] if rank == 0 else None
    dist.gather(t, out, dst=0)
    return out if rank == 0 else t
same("gather", *both(f, x)); print("OK gather")

def f(*ins):
    out = torch.empty_like(ins[0])
    dist.scatter(out, list(ins) if rank == 0 else None, src=0)
    return out
same("scatter", *both(f, *[torch.randn(4, generator=g) + i for i in range(world)])); print("OK scatter")

# send/recv around a ring, paired so that no two ranks send to each other first
def f(t):
    nxt, prv = (rank + 1) % world, (rank - 1) % world
    got = torch.empty_like(t)
    if rank % 2 == 0:
        dist.send(t, nxt); dist.recv(got, prv)
    else:
        dist.recv(got, prv); dist.send(t, nxt)
    return got
if world % 2 == 0:
    same("send_recv", *both(f, x)); print("OK send_recv")
else:
    print("OK send_recv")

# batch_isend_irecv around the ring, every rank sending first: the group's sends and receives run
# together (one after the other on the stream, each waiting for its peer, would deadlock)
def f(t):
    got = torch.empty_like(t)
    ops = [dist.P2POp(dist.isend, t, (rank + 1) % world), dist.P2POp(dist.irecv, got, (rank - 1) % world)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    return got
same("batch_isend_irecv", *both(f, x)); print("OK batch_isend_irecv")

# async_op, with the coalescing manager FSDP's code paths use
t = x.to(dev)
work = dist.all_reduce(t, async_op=True)
work.wait()
c = x.clone(); dist.all_reduce(c)
same("async all_reduce", t, c)
ts = [x.to(dev), (x * 2).to(dev)]
with dist._coalescing_manager(device=dev, async_ops=True) as cm:
    for u in ts:
        dist.all_reduce(u)
cm.wait()
cs = [x.clone(), x * 2]
for u in cs:
    dist.all_reduce(u)
same("coalesced all_reduce", ts, cs)
print("OK async")

dist.barrier()
print("OK barrier")

# a subgroup of ranks 0 and 1 (new_group makes sccl and gloo backends of its own)
sub = dist.new_group([0, 1])
if rank in (0, 1):
    def f(t):
        dist.all_reduce(t, group=sub)
        return t
    same("new_group all_reduce", *both(f, x))
print("OK new_group")
dist.destroy_process_group()
"""

EXPECTED = ["all_reduce SUM", "all_reduce PRODUCT", "all_reduce MIN", "all_reduce MAX", "all_reduce AVG",
            "premul_sum", "broadcast", "reduce", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor",
            "reduce_scatter", "all_to_all_single", "all_to_all", "gather", "scatter", "send_recv", "batch_isend_irecv", "async",
            "barrier", "new_group"]


@pytest.mark.parametrize("world_size", [2, 3])
def test_collectives_match_gloo_on_cpu(world_size: int) -> None:
    results = run_ranks(COLLECTIVES, world_size, timeout_s=180)
    assert all(r.returncode == 0 for r in results), describe(results)
    for r in results:
        done = [line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")]
        assert done == EXPECTED, describe(results)


TRAINING = PRELUDE + """
import copy
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.distributed.fsdp import fully_shard

dist.init_process_group(device_id=dev)  # no backend named: sccl, the sunrise default
assert dist.get_backend_config() == "sunrise:sccl" or "sccl" in dist.get_backend_config(), dist.get_backend_config()
mode = sys.argv[1] if len(sys.argv) > 1 else os.environ["MODE"]
torch.manual_seed(0)
def build():
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                               torch.nn.Linear(32, 4))
model = build()
reference = copy.deepcopy(model)
model.to(dev)
if mode == "ddp":
    wrapped = DDP(model, device_ids=[dev.index])
else:
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    wrapped = fully_shard(model)
opt = torch.optim.AdamW(wrapped.parameters(), lr=1e-2)
ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-2)
g = torch.Generator().manual_seed(1)
for step in range(20):
    x, y = torch.randn(8 * world, 16, generator=g), torch.randn(8 * world, 4, generator=g)
    loss = torch.nn.functional.mse_loss(wrapped(x[rank * 8:(rank + 1) * 8].to(dev)), y[rank * 8:(rank + 1) * 8].to(dev))
    opt.zero_grad(); loss.backward(); opt.step()
    ref_loss = torch.nn.functional.mse_loss(reference(x), y)
    ref_opt.zero_grad(); ref_loss.backward(); ref_opt.step()
state = model.state_dict()
for name, value in reference.state_dict().items():
    got = state[name].full_tensor() if mode == "fsdp" else state[name]
    torch.testing.assert_close(got.cpu(), value, rtol=0, atol=1e-5, msg=name)
print("OK", mode)
dist.destroy_process_group()
"""


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_data_parallel_training_matches_single_process(mode: str) -> None:
    results = run_ranks(TRAINING, 2, timeout_s=180, env={"MODE": mode})
    assert all(r.returncode == 0 and f"OK {mode}" in r.stdout for r in results), describe(results)


STREAMS = PRELUDE + """
import time
dist.init_process_group("sunrise:sccl")
x = torch.ones(1 << 16, device=dev)
dist.all_reduce(x); torch.sunrise.synchronize()
w = torch.randn(768, 768, device=dev)
for _ in range(6):
    w = w @ w / 768
y = (w.sum() * 0 + 1) * torch.ones(1 << 16, device=dev)  # depends on the queued matmuls
start = time.perf_counter()
work = dist.all_reduce(y, async_op=True)
other = (w @ w).sum()  # compute queued while the collective is in flight
work.wait()  # the current stream waits; the host does not
host = time.perf_counter() - start
pending = not torch.sunrise.current_stream().query()
z = y * 2  # ordered after the collective by wait()
assert torch.equal(z.cpu(), torch.full((1 << 16,), 2.0 * world)), z.cpu()[:4]
assert torch.isfinite(other).item()
print("OK", pending, f"{host:.4f}")
dist.destroy_process_group()
"""


def test_collectives_are_stream_ordered_and_wait_does_not_block_the_host() -> None:
    results = run_ranks(STREAMS, 2, timeout_s=120)
    assert all(r.returncode == 0 for r in results), describe(results)
    for r in results:
        _, pending, _host = r.stdout.split()[-3:]
        assert pending == "True", describe(results)


DEAD_RANK = PRELUDE + """
import time
dist.init_process_group("sunrise:sccl", timeout=datetime.timedelta(seconds=10))
x = torch.ones(4, device=dev)
dist.all_reduce(x); torch.sunrise.synchronize()
if rank == 1:
    os._exit(3)  # dies without a word
time.sleep(1)
start = time.perf_counter()
try:
    dist.all_reduce(x)
    x.cpu()  # the next synchronizing call raises the collective's error
except RuntimeError as e:
    print("RAISED", f"{time.perf_counter() - start:.1f}", str(e).splitlines()[0][:200])
    os._exit(0)
print("NO ERROR")
os._exit(1)
"""


def test_dead_rank_fails_the_others_within_the_timeout() -> None:
    results = run_ranks(DEAD_RANK, 2, timeout_s=90, stop_on_failure=False)
    survivor = results[0]
    assert survivor.returncode == 0 and "RAISED" in survivor.stdout, describe(results)
    waited = float(survivor.stdout.split("RAISED")[1].split()[0])
    assert waited < 60, describe(results)


WRONG_DEVICE = PRELUDE + """
dist.init_process_group("sunrise:sccl")
x = torch.ones(4, device=dev)
dist.all_reduce(x)
other = torch.device("sunrise", (dev.index + 1) % torch.sunrise.device_count())
try:
    dist.all_reduce(torch.ones(4, device=other))
except ValueError as e:
    print("OK", str(e).splitlines()[0])
dist.destroy_process_group()
"""


@pytest.mark.two_devices
def test_tensor_on_another_device_is_a_clear_error() -> None:
    results = run_ranks(WRONG_DEVICE, 2, timeout_s=120)
    assert all(r.returncode == 0 and "OK" in r.stdout and "communicates on sunrise:" in r.stdout
               for r in results), describe(results)


# For scripts run by a launcher: its workers share one stdout, so a result line goes out in one write
# (print writes piecewise, and two ranks' lines interleave).
REPORT = """
import os

def report(*fields):
    os.write(1, (" ".join(str(f) for f in fields) + "\\n").encode())
"""

LAUNCHED = REPORT + """
import os, torch, torch_sunrise
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from transformers import GPT2Config, GPT2LMHeadModel

local_rank, rank, world = int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dev = torch.device("sunrise", local_rank % torch.sunrise.device_count())
torch.sunrise.set_device(dev)
dist.init_process_group(device_id=dev)
torch.manual_seed(0)
cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32, resid_pdrop=0, embd_pdrop=0,
                 attn_pdrop=0)
model = DDP(GPT2LMHeadModel(cfg).to(dev), device_ids=[dev.index])
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(100 + rank)
for step in range(5):
    ids = torch.randint(0, 128, (2, 16), generator=g).to(dev)
    loss = model(input_ids=ids, labels=ids).loss
    opt.zero_grad(); loss.backward(); opt.step()
# Every rank holds the same parameters after DDP's steps.
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.empty_like(flat) for _ in range(world)]
dist.all_gather(gathered, flat)
assert all(torch.equal(gathered[0].cpu(), t.cpu()) for t in gathered)
report("OK", rank, world, os.environ.get("OMP_NUM_THREADS"), f"{loss.item():.4f}")
dist.destroy_process_group()
"""


def _torchrun(script: str, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "torch.distributed.run", *args, script]


@pytest.mark.parametrize("hosts", [1, 2])
def test_torchrun(hosts: int) -> None:
    """``torchrun --nproc-per-node=2`` on one host; or two launches of ``torchrun --nnodes=2`` (one
    process each) joined through a c10d rendezvous on loopback, as two hosts would be."""
    pytest.importorskip("transformers")
    from ranks import free_port, run_launchers, write_script

    script = write_script(LAUNCHED)
    endpoint = f"127.0.0.1:{free_port()}"
    try:
        if hosts == 1:
            argvs = [_torchrun(script, "--nproc-per-node=2", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}")]
        else:
            argvs = [_torchrun(script, "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
                               f"--rdzv-endpoint={endpoint}", "--rdzv-id=sunrise-test", f"--node-rank={n}",
                               "--local-addr=127.0.0.1")
                     for n in range(hosts)]
        results = run_launchers(argvs, timeout_s=240)
    finally:
        os.unlink(script)
    assert all(r.returncode == 0 for r in results), describe(results)
    lines = [line for r in results for line in r.stdout.splitlines() if line.startswith("OK ")]
    assert sorted(line.split()[1] for line in lines) == ["0", "1"], describe(results)


TRAINER = REPORT + """
import os, tempfile, torch, torch_sunrise
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32,
                                   bos_token_id=0, eos_token_id=0))
g = torch.Generator().manual_seed(0)
data = [{"input_ids": (ids := torch.randint(0, 128, (16,), generator=g)), "labels": ids} for _ in range(16)]
args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=4, per_device_train_batch_size=2, report_to=[],
                         save_strategy="no", dataloader_num_workers=0)
Trainer(model=model, args=args, train_dataset=data).train()
checksum = sum(p.detach().double().sum().item() for p in model.parameters())  # equal on synchronized ranks
report("OK", os.environ["RANK"], args.device, args.parallel_mode.name, args.world_size, repr(checksum))
"""


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_huggingface_trainer_on_two_processes(launcher: str) -> None:
    """HF ``Trainer`` under ``torchrun --nproc-per-node=2`` and ``accelerate launch --multi_gpu
    --num_processes 2``: distributed over sunrise:0 and sunrise:1 (DDP over sccl), one loss."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import shutil
    import sys

    from ranks import free_port, run_launchers, write_script

    script = write_script(TRAINER)
    port = free_port()
    try:
        if launcher == "torchrun":
            argv = _torchrun(script, "--nproc-per-node=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}")
        else:
            accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
            argv = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port), script]
        results = run_launchers([argv], timeout_s=240)
    finally:
        os.unlink(script)
    assert results[0].returncode == 0, describe(results)
    lines = sorted(line.split() for line in results[0].stdout.splitlines() if line.startswith("OK "))
    assert [line[1:5] for line in lines] == [["0", "sunrise:0", "DISTRIBUTED", "2"], ["1", "sunrise:1", "DISTRIBUTED", "2"]], \
        describe(results)
    assert lines[0][5] == lines[1][5], describe(results)  # the ranks hold one model (DDP kept it in sync)


MISMATCH = PRELUDE + """
dist.init_process_group("sunrise:sccl", timeout=datetime.timedelta(seconds=30))
x = torch.ones(4 + rank, device=dev)  # rank 1 passes one element more
try:
    dist.all_reduce(x)
    x.cpu()
except RuntimeError as e:
    print("RAISED", str(e).replace(chr(10), " "))
"""


def test_mismatched_collectives_are_a_clear_error() -> None:
    # Without the ranks' check gloo would abort the process on a size mismatch.
    results = run_ranks(MISMATCH, 2, timeout_s=90, stop_on_failure=False)
    for r in results:
        assert r.returncode == 0 and "collectives do not match across ranks" in r.stdout, describe(results)
        assert "rank 0: ALLREDUCE (Float x 4); rank 1: ALLREDUCE (Float x 5)" in r.stdout, describe(results)


DTENSOR = PRELUDE + """
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

mesh = init_device_mesh("sunrise", (world,))  # initializes the default group: sccl
x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
dx = distribute_tensor(x.to(dev), mesh, [Shard(0)])
assert dx.to_local().shape == (8 // world, 6) and dx.to_local().device == dev
assert torch.equal(dx.redistribute(mesh, [Replicate()]).to_local().cpu(), x)
col = (dx * 2).sum(0)  # partial sums over the shards, reduced by the collective
torch.testing.assert_close(col.full_tensor().cpu(), (x * 2).sum(0))
w = distribute_tensor(torch.eye(6).to(dev), mesh, [Replicate()])
assert torch.equal((dx @ w).full_tensor().cpu(), x)
print("OK dtensor")
dist.destroy_process_group()
"""


def test_dtensor_on_a_sunrise_device_mesh() -> None:
    results = run_ranks(DTENSOR, 2, timeout_s=120)
    assert all(r.returncode == 0 and "OK dtensor" in r.stdout for r in results), describe(results)


def _child(tensor: object) -> None:
    pass


def test_sharing_a_sunrise_tensor_with_another_process_is_a_clear_error() -> None:
    import multiprocessing.reduction

    import torch
    import torch.multiprocessing as mp

    with pytest.raises(RuntimeError, match="no inter-process memory"):
        multiprocessing.reduction.ForkingPickler.dumps(torch.ones(3, device="sunrise"))
    with pytest.raises(RuntimeError, match="no inter-process memory"):
        multiprocessing.reduction.ForkingPickler.dumps(torch.nn.Parameter(torch.ones(2, device="sunrise")))
    process = mp.get_context("spawn").Process(target=_child, args=(torch.ones(3, device="sunrise"),))
    with pytest.raises(RuntimeError, match="no inter-process memory"):
        process.start()
    assert multiprocessing.reduction.ForkingPickler.loads(
        multiprocessing.reduction.ForkingPickler.dumps(torch.arange(3))).tolist() == [0, 1, 2]  # CPU as before
