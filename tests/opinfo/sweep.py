"""OpInfo agreement sweep: every OpInfo in PyTorch's ``op_db`` run on sunrise and on CPU.

For each OpInfo and each dtype of (float32, int64, bool, bfloat16) that the OpInfo
supports on CPU, the first ``--limit-samples`` sample inputs (generated on CPU with a
fixed seed) are run on CPU, then on sunrise (the sample copied with its exact strides,
storage offsets and storage sharing), and the results are compared with
``torch.testing.assert_close`` (``equal_nan=True``; the OpInfo's tolerance overrides
where it has them, else the default per-dtype tolerances, exact for integers and bool).

Outcome per (op, dtype):
  agree     every sample agrees (a sample for which CPU raises must raise on sunrise too)
  mismatch  some value / shape / dtype / device differs, or sunrise did not raise where CPU did
  error     sunrise raised where CPU did not
  crash     the worker process died while running the op
  timeout   the op did not finish within ``--timeout`` seconds
  skip      not counted: dtype unsupported on CPU, or CPU could not generate samples

Random ops (and ops returning uninitialized memory) are compared on shape, dtype and
device only. Agreement = agree / (agree + mismatch + error + crash + timeout).

Crash safety: ops run in worker subprocesses (``--workers``, default 1), which report
each (op, dtype) before starting it; a worker that dies or hangs is replaced and the
sweep goes on with the next op.

Usage (from the repository root)::

    python -m tests.opinfo.sweep                              # the full sweep
    python -m tests.opinfo.sweep --ops add,mul --dtypes float32
    python -m tests.opinfo.sweep --max-ops 50 --json out.json
    python -m tests.opinfo.sweep --report docs/opinfo_sweep.md --json sweep.json
"""

from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import json
import os
import platform
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

DEFAULT_DTYPES = ("float32", "int64", "bool", "bfloat16")
COUNTED = ("agree", "mismatch", "error", "crash", "timeout")
OUTCOMES = COUNTED + ("skip",)
DEVICE = "sunrise"

# Ops whose values are random (or uninitialized memory): compared on metadata only.
# Explicit names first, then a token heuristic for OpInfos added in later PyTorch versions.
RANDOM_OPS = {
    "bernoulli", "cauchy", "exponential", "geometric", "log_normal", "multinomial",
    "normal", "normal.in_place", "normal.number_mean", "uniform",
    "rand_like", "randint", "randint_like", "randn", "randn_like",
    "nn.functional.alpha_dropout", "nn.functional.dropout", "nn.functional.dropout2d",
    "nn.functional.dropout3d", "nn.functional.feature_alpha_dropout.with_train",
    "nn.functional.fractional_max_pool2d", "nn.functional.fractional_max_pool3d",
    "nn.functional.rrelu", "pca_lowrank", "svd_lowrank",
    "empty", "empty_like", "empty_permuted", "empty_strided", "new_empty", "new_empty_strided",
}
RANDOM_TOKENS = {
    "rand", "randn", "randint", "randperm", "bernoulli", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "multinomial", "normal", "uniform", "cauchy", "geometric", "poisson", "rrelu",
    "lowrank", "gumbel", "empty",
}
NOT_RANDOM = {
    "nn.functional.feature_alpha_dropout.without_train", "native_dropout_backward",
    "nn.functional.poisson_nll_loss", "signal.windows.exponential", "__rand__",
}

# The fast representative subset used by tests/test_opinfo_sweep.py (exact keys).
QUICK_OPS = (
    "add", "sub", "mul", "div.no_rounding_mode", "true_divide", "pow", "neg", "abs", "exp",
    "log", "sqrt", "rsqrt", "tanh", "sigmoid", "clamp", "where", "eq", "lt", "maximum",
    "sum", "mean", "prod", "amax", "argmax", "cumsum", "max.reduction_with_dim",
    "matmul", "mm", "bmm", "addmm", "nn.functional.linear", "nn.functional.conv2d",
    "softmax", "log_softmax", "nn.functional.relu", "nn.functional.gelu", "nn.functional.silu",
    "nn.functional.layer_norm", "nn.functional.embedding", "nn.functional.dropout",
    "cat", "stack", "reshape", "view", "transpose", "permute", "contiguous", "expand",
    "index_select", "gather", "scatter", "masked_fill", "topk", "sort", "nonzero",
    "arange", "zeros_like", "ones", "full", "to",
)


def op_key(op) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


def is_random(key: str) -> bool:
    if key in NOT_RANDOM:
        return False
    if key in RANDOM_OPS:
        return True
    tokens = set(re.split(r"[._]+", key))
    return bool(tokens & RANDOM_TOKENS)


def stable_seed(key: str, dtype: str) -> int:
    return zlib.crc32(f"{key}/{dtype}".encode()) & 0x7FFFFFFF


def one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- worker side
# Everything below up to the "driver" section runs in the worker subprocess (it imports
# torch); the driver itself never imports torch, so that a broken build cannot take it down.


def _torch():
    import torch

    return torch


def _dtype(name: str):
    return getattr(_torch(), name)


def describe(obj: Any, depth: int = 0) -> str:
    """A compact description of a sample argument, enough to rebuild a repro."""
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        dt = str(obj.dtype).replace("torch.", "")
        s = f"T{list(obj.shape)}:{dt}"
        if obj.layout != torch.strided:
            return s + f"/{str(obj.layout).replace('torch.', '')}"
        if obj.numel() > 1 and not obj.is_contiguous():
            s += f"/stride{tuple(obj.stride())}"
        if obj.storage_offset():
            s += f"/off{obj.storage_offset()}"
        if obj.numel() <= 4:
            try:
                s += "=" + repr(obj.detach().cpu().tolist())
            except Exception:  # noqa: BLE001
                pass
        return s
    if depth > 3:
        return "..."
    if isinstance(obj, (list, tuple)):
        inner = ", ".join(describe(x, depth + 1) for x in obj[:8])
        if len(obj) > 8:
            inner += f", ...({len(obj)})"
        return ("[" + inner + "]") if isinstance(obj, list) else ("(" + inner + ("," if len(obj) == 1 else "") + ")")
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k}={describe(v, depth + 1)}" for k, v in obj.items()) + "}"
    if callable(obj) and hasattr(obj, "__name__"):
        return obj.__name__
    return repr(obj)


def describe_sample(sample) -> str:
    parts = [describe(sample.input)]
    parts += [describe(a) for a in sample.args]
    parts += [f"{k}={describe(v)}" for k, v in sample.kwargs.items()]
    return one_line(", ".join(parts), 400)


def walk(obj: Any, path: tuple = ()) -> Iterable[tuple[tuple, Any]]:
    """(path, tensor) for every tensor in a nested structure of lists, tuples and dicts."""
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from walk(v, path + (i,))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, path + (k,))


def sample_tree(sample) -> dict:
    return {"input": sample.input, "args": sample.args, "kwargs": sample.kwargs}


def cpu_resident_paths(op, dtype, seed: int, limit: int | None) -> list[set] | None:
    """Which sample tensors sample_inputs puts on the CPU whatever the device (e.g. the
    indices tensor of tensor_split, which must stay on the CPU on CUDA too).

    Found by generating the samples again for device "meta": a tensor that is on the CPU
    there was created without the device argument. Per sample, the set of its paths; an
    empty set when the meta sample's structure differs; None if meta generation fails."""
    torch = _torch()
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        metas = list(itertools.islice(op.sample_inputs("meta", dtype, requires_grad=False), limit))
    except Exception:  # noqa: BLE001
        return None
    finally:
        torch.random.set_rng_state(state)
    return [{p: t.device.type for p, t in walk(sample_tree(m))} for m in metas]


class Mover:
    """Copies a CPU sample to sunrise, keeping strides, storage offsets and the sharing
    of storage between tensors (so views and expanded inputs stay views on the device).
    Tensors at the paths in keep_cpu stay on the CPU (cloned)."""

    def __init__(self, device: str, keep_cpu: set | frozenset = frozenset()):
        self.device = device
        self.keep_cpu = keep_cpu
        self.storages: dict[int, Any] = {}
        self.placed = 0  # tensors and device arguments now on sunrise

    def tensor(self, t):
        torch = _torch()
        if t.layout != torch.strided or t.device.type != "cpu":
            return t.to(self.device)
        storage = t.untyped_storage()
        key = storage.data_ptr() if storage.nbytes() else id(storage)
        base = self.storages.get(key)
        if base is None:
            base = torch.empty(storage.nbytes(), dtype=torch.uint8, device=self.device)
            if storage.nbytes():
                cpu_bytes = torch.empty(0, dtype=torch.uint8).set_(storage)
                base.copy_(cpu_bytes)
            self.storages[key] = base
        out = torch.empty(0, dtype=t.dtype, device=self.device)
        out.set_(base.untyped_storage(), t.storage_offset(), t.shape, t.stride())
        if t.requires_grad:
            out.requires_grad_(True)
        return out

    def __call__(self, obj: Any, path: tuple = ()) -> Any:
        torch = _torch()
        if isinstance(obj, torch.Tensor):
            if path in self.keep_cpu:
                return obj.clone()
            self.placed += 1
            return self.tensor(obj)
        if isinstance(obj, torch.device) and obj.type == "cpu":
            self.placed += 1
            return torch.device(self.device)
        if isinstance(obj, str) and (obj == "cpu" or obj.startswith("cpu:")):
            self.placed += 1
            return self.device  # the device string sample_inputs("cpu", ...) put in the sample
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
            return type(obj)(*(self(x, path + (i,)) for i, x in enumerate(obj)))
        if isinstance(obj, (list, tuple)):
            return type(obj)(self(x, path + (i,)) for i, x in enumerate(obj))
        if isinstance(obj, dict):
            return {k: self(v, path + (k,)) for k, v in obj.items()}
        return obj


def clone_tree(obj: Any) -> Any:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(clone_tree(x) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tree(x) for x in obj)
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    return obj


def seeded_op_detector():
    """A dispatch mode that records the first ATen op tagged nondeterministic_seeded (bernoulli,
    native_dropout, rand, ...) run under it: such a sample is random even when the OpInfo fixes
    the seed (wrapper_set_seed), because sunrise has its own generator, as CUDA does."""
    torch = _torch()
    from torch.utils._python_dispatch import TorchDispatchMode

    class Detector(TorchDispatchMode):
        hit = None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if self.hit is None and torch.Tag.nondeterministic_seeded in func.tags:
                self.hit = func.name()
            return func(*args, **(kwargs or {}))

    return Detector()


def to_cpu(obj: Any) -> Any:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_cpu(x) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(x) for x in obj)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    return obj


def tensors_of(obj: Any, path: str = "out") -> list[tuple[str, Any]]:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return [(path, obj)]
    if isinstance(obj, (list, tuple)):
        return [x for i, v in enumerate(obj) for x in tensors_of(v, f"{path}[{i}]")]
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in tensors_of(v, f"{path}[{k!r}]")]
    return []


def tolerances(op, dtype) -> tuple[float, float] | None:
    """(rtol, atol) from the OpInfo's toleranceOverride decorators for dtype, at least the
    defaults of assert_close; None if the OpInfo has no override for dtype."""
    from torch.testing._internal.common_device_type import toleranceOverride
    from torch.testing._comparison import default_tolerances

    best = None
    for info in getattr(op, "decorators", ()) or ():
        if getattr(info, "device_type", None) not in (None, "cpu", "cuda"):
            continue
        for deco in getattr(info, "decorators", ()) or ():
            if isinstance(deco, toleranceOverride) and dtype in deco.d:
                t = deco.d[dtype]
                best = (max(best[0], t.rtol), max(best[1], t.atol)) if best else (t.rtol, t.atol)
    if best is None:
        return None
    rtol, atol = default_tolerances(dtype)
    return max(best[0], rtol), max(best[1], atol)


def check_devices(actual: Any) -> str | None:
    for path, t in tensors_of(actual):
        if t.device.type != DEVICE:
            return f"{path} is on {t.device}, expected {DEVICE}"
    return None


def compare(expected: Any, actual_dev: Any, tol, metadata_only: bool, check_device: bool = True) -> str | None:
    """None if they agree, else a reason. actual_dev is the sunrise result."""
    torch = _torch()
    bad_device = check_devices(actual_dev) if check_device else None
    if bad_device:
        return bad_device
    actual = to_cpu(actual_dev)
    if metadata_only:
        exp_t, act_t = tensors_of(expected), tensors_of(actual)
        if len(exp_t) != len(act_t):
            return f"{len(act_t)} tensors returned, expected {len(exp_t)}"
        for (path, e), (_, a) in zip(exp_t, act_t):
            if e.shape != a.shape or e.dtype != a.dtype:
                return f"{path}: {list(a.shape)} {a.dtype}, expected {list(e.shape)} {e.dtype}"
        return None
    kwargs = dict(equal_nan=True)
    if tol is not None:
        kwargs.update(rtol=tol[0], atol=tol[1])
    try:
        torch.testing.assert_close(actual, expected, **kwargs)
        return None
    except AssertionError as e:
        msg = str(e)
        lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
        return one_line(" | ".join(lines[:4]), 300)
    except (TypeError, ValueError, RuntimeError) as e:  # types assert_close does not know
        try:
            if actual == expected:
                return None
        except Exception:  # noqa: BLE001
            pass
        return one_line(f"cannot compare: {type(e).__name__}: {e}")


def exc_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    first = msg[0] if msg else ""
    return one_line(f"{type(e).__name__}: {first}", 240)


_progress = None  # set in workers: reports the sample about to run, for crash records
_perturb = False  # fault injection ("wrong:OP"): corrupt the sunrise result, to test the comparison


def perturbed(obj: Any) -> Any:
    torch = _torch()
    if isinstance(obj, torch.Tensor):
        return torch.logical_not(obj) if obj.dtype == torch.bool else obj + 1
    if isinstance(obj, (list, tuple)):
        return type(obj)(perturbed(x) for x in obj)
    return obj


def run_one(op, key: str, dtype_name: str, limit: int) -> dict:
    """Run one (op, dtype) on CPU and sunrise; returns a result record."""
    import torch
    import torch_sunrise

    dtype = _dtype(dtype_name)
    rec: dict[str, Any] = {"op": key, "dtype": dtype_name, "outcome": "agree", "reason": "", "samples": 0}
    if dtype not in op.supported_dtypes("cpu"):
        rec.update(outcome="skip", reason="dtype not supported on CPU")
        return rec
    metadata_only = is_random(key)
    rec["metadata_only"] = metadata_only
    tol = tolerances(op, dtype)
    seed = stable_seed(key, dtype_name)
    limit = limit if limit and limit > 0 else None
    placement = cpu_resident_paths(op, dtype, seed, limit)
    torch.manual_seed(seed)
    try:
        samples = list(itertools.islice(op.sample_inputs("cpu", dtype, requires_grad=False), limit))
    except Exception as e:  # noqa: BLE001
        rec.update(outcome="skip", reason="CPU sample generation failed: " + exc_line(e))
        return rec
    if not samples:
        rec.update(outcome="skip", reason="no sample inputs")
        return rec
    torch_sunrise.reset_fallback_stats()
    cpu_raised = 0
    for i, sample in enumerate(samples):
        rec["samples"] = i + 1
        desc = describe_sample(sample)
        phase = _progress or (lambda **_: None)
        phase(sample=[i, desc], phase="copying the sample to sunrise")
        # Copy to the device first: the CPU run may mutate the sample.
        keep_cpu = set()
        if placement is not None and i < len(placement):
            paths = {p: t.device.type for p, t in walk(sample_tree(sample))}
            if paths.keys() == placement[i].keys():
                keep_cpu = {p for p, dev in placement[i].items() if dev == "cpu"}
                if keep_cpu:
                    rec["kept_on_cpu"] = sorted({".".join(map(str, p)) for p in keep_cpu})
        try:
            mover = Mover(DEVICE, keep_cpu)
            dev_input = mover(sample.input, ("input",))
            dev_args = mover(sample.args, ("args",))
            dev_kwargs = mover(sample.kwargs, ("kwargs",))
        except Exception as e:  # noqa: BLE001
            rec.update(outcome="error", reason=f"sample {i}: moving the sample to {DEVICE}: {exc_line(e)}",
                       sample=desc, traceback=traceback.format_exc(limit=-6))
            break
        probe = None if metadata_only else clone_tree(sample_tree(sample))
        phase(phase="CPU run")
        torch.manual_seed(seed)
        try:
            expected = op(sample.input, *sample.args, **sample.kwargs)
            cpu_exc = None
        except Exception as e:  # noqa: BLE001
            expected, cpu_exc = None, e
        # A sample is random (e.g. dropout_p > 0) if it runs a seeded-random ATen op (found by
        # running it again on a copy, under a dispatch mode); compared on metadata only.
        # (Comparing two CPU runs with different seeds is no test: the copy has another memory
        # layout, which changes LAPACK and as_strided results, and OpInfos may fix the seed.)
        sample_random = metadata_only
        if probe is not None and cpu_exc is None:
            detector = seeded_op_detector()
            try:
                with detector:
                    op(probe["input"], *probe["args"], **probe["kwargs"])
            except Exception:  # noqa: BLE001
                pass
            sample_random = detector.hit is not None
            if sample_random:
                rec["random_samples"] = rec.get("random_samples", 0) + 1
                rec["random_op"] = detector.hit
        phase(phase="sunrise run")
        torch.manual_seed(seed)
        try:
            actual = op(dev_input, *dev_args, **dev_kwargs)
            if _perturb:
                actual = perturbed(actual)
            torch.sunrise.synchronize()
            dev_exc = None
        except Exception as e:  # noqa: BLE001
            actual, dev_exc = None, e
            dev_tb = traceback.format_exc(limit=-6)
        if cpu_exc is not None:
            cpu_raised += 1
            if dev_exc is None:
                rec.update(outcome="mismatch",
                           reason=f"sample {i}: CPU raised ({exc_line(cpu_exc)}) but {DEVICE} did not",
                           sample=desc)
                break
            continue
        if dev_exc is not None:
            rec.update(outcome="error", reason=f"sample {i}: {exc_line(dev_exc)}", sample=desc, traceback=dev_tb)
            break
        phase(phase="comparison (copying sunrise results to CPU)")
        try:
            # A sample with nothing on sunrise (e.g. torch.arange(2)) rightly returns CPU tensors.
            reason = compare(expected, actual, tol, sample_random, check_device=mover.placed > 0)
            if reason is None and not sample_random:
                # In-place ops and out= arguments: the sample itself must agree afterwards.
                reason = compare([t for _, t in tensors_of([sample.input, sample.args, sample.kwargs])],
                                 [t for _, t in tensors_of([dev_input, dev_args, dev_kwargs])], tol, False,
                                 check_device=False)
                if reason:
                    reason = "inputs after the op differ: " + reason
        except Exception as e:  # noqa: BLE001
            rec.update(outcome="error", reason=f"sample {i}: reading the result back: {exc_line(e)}", sample=desc,
                       traceback=traceback.format_exc(limit=-6))
            break
        if reason:
            rec.update(outcome="mismatch", reason=f"sample {i}: {reason}", sample=desc)
            break
    rec["cpu_raised"] = cpu_raised
    rec["fallback_ops"] = sorted(torch_sunrise.fallback_stats())
    return rec


def device_healthy() -> str | None:
    import torch

    try:
        x = torch.arange(8, dtype=torch.float32).to(DEVICE)
        y = (x * 2 + 1).cpu()
        torch.sunrise.synchronize()
        if not torch.equal(y, torch.arange(8, dtype=torch.float32) * 2 + 1):
            return "health check computed wrong values"
        return None
    except Exception as e:  # noqa: BLE001
        return exc_line(e)


def worker_main(task_file: str, fd: int, limit: int, threads: int) -> int:
    out = os.fdopen(fd, "w", buffering=1)

    def emit(**msg):
        out.write(json.dumps(msg) + "\n")
        out.flush()

    import faulthandler
    import warnings

    faulthandler.enable()  # a segfault leaves the Python stack in the worker's stderr
    warnings.filterwarnings("ignore")
    import torch
    from torch.testing._internal.common_methods_invocations import op_db

    if threads > 0:
        torch.set_num_threads(threads)
    ops = {op_key(op): op for op in op_db}
    global _progress
    _progress = emit
    with open(task_file) as f:
        tasks = json.load(f)
    emit(ready=True, pid=os.getpid())
    # Fault injection for testing the sweep: SUNRISE_SWEEP_INJECT="crash:OP,hang:OP,exit:OP,wrong:OP".
    global _perturb
    inject = dict(reversed(item.split(":", 1)) for item in os.environ.get("SUNRISE_SWEEP_INJECT", "").split(",")
                  if ":" in item)
    for key, dtype_name in tasks:
        emit(start=[key, dtype_name])
        t0 = time.monotonic()
        fault = inject.get(key)
        _perturb = fault == "wrong"
        if fault == "crash":
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)
        elif fault == "hang":
            time.sleep(1e6)
        elif fault == "exit":
            os._exit(7)
        try:
            rec = run_one(ops[key], key, dtype_name, limit)
        except Exception as e:  # noqa: BLE001
            rec = {"op": key, "dtype": dtype_name, "outcome": "error",
                   "reason": "sweep internal error: " + exc_line(e), "traceback": traceback.format_exc()}
        rec["seconds"] = round(time.monotonic() - t0, 3)
        sick = device_healthy()
        if sick:
            rec["note"] = f"device unhealthy after this op ({sick}); worker restarted"
        emit(done=rec)
        if sick:
            return 3
    emit(finished=True)
    return 0


# --------------------------------------------------------------------------- driver


@dataclass
class Slot:
    tasks: collections.deque
    proc: subprocess.Popen | None = None
    fd: int = -1
    buf: bytes = b""
    current: tuple | None = None
    sample: list | None = None
    phase: str = ""
    deadline: float = 0.0
    stderr_path: str = ""
    task_file: str = ""
    started_any: bool = False
    failures_without_progress: int = 0
    batch: list = field(default_factory=list)


def signal_name(num: int) -> str:
    import signal

    try:
        return signal.Signals(num).name
    except ValueError:
        return "?"


def list_tasks(dtypes: Iterable[str], ops_filter: list[str] | None, max_ops: int | None,
               exact: Iterable[str] | None = None) -> tuple[list[tuple[str, str]], list[dict]]:
    """(tasks to run, skip records for dtypes unsupported on CPU). Imports torch in a
    subprocess so the driver stays torch-free."""
    code = (
        "import json, sys, warnings; warnings.filterwarnings('ignore')\n"
        "import torch\n"
        "from torch.testing._internal.common_methods_invocations import op_db\n"
        "res = []\n"
        "for op in op_db:\n"
        "    key = op.name + ('.' + op.variant_test_name if op.variant_test_name else '')\n"
        "    sd = op.supported_dtypes('cpu')\n"
        "    res.append([key, [str(d).replace('torch.', '') for d in sd]])\n"
        "json.dump(res, sys.stdout)\n"
    )
    env = dict(os.environ, SUNRISE_FALLBACK="silent")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    listing = json.loads(out.stdout)
    exact = set(exact) if exact else None
    selected = []
    for key, supported in listing:
        if exact is not None and key not in exact:
            continue
        if ops_filter and not any(
            (key == p[1:]) if p.startswith("=") else (p in key) for p in ops_filter
        ):
            continue
        selected.append((key, set(supported)))
    if max_ops:
        selected = selected[:max_ops]
    tasks, skips = [], []
    for key, supported in selected:
        for d in dtypes:
            if d in supported:
                tasks.append((key, d))
            else:
                skips.append({"op": key, "dtype": d, "outcome": "skip", "reason": "dtype not supported on CPU"})
    return tasks, skips


def worker_env(threads: int) -> dict:
    env = dict(os.environ)
    env["SUNRISE_FALLBACK"] = "silent"
    env.setdefault("SUNRISE_COMPUTE_UNITS", str(max(threads, 1)))
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONWARNINGS"] = "ignore"
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = repo_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_sweep(
    dtypes: Iterable[str] = DEFAULT_DTYPES,
    ops_filter: list[str] | None = None,
    max_ops: int | None = None,
    limit_samples: int = 4,
    timeout: float = 60.0,
    workers: int = 1,
    threads: int = 1,
    exact_ops: Iterable[str] | None = None,
    tasks_per_worker: int = 400,
    progress: bool = True,
    log=sys.stderr,
) -> dict:
    """Run the sweep; returns {"records": [...], "seconds": float, "config": {...}}."""
    t_start = time.monotonic()
    dtypes = list(dtypes)
    tasks, records = list_tasks(dtypes, ops_filter, max_ops, exact_ops)
    total = len(tasks)
    workers = max(1, min(workers, 2))
    slots = [Slot(collections.deque(tasks[i::workers])) for i in range(workers)]
    env = worker_env(threads)
    tmpdir = tempfile.mkdtemp(prefix="sunrise_sweep_")
    sel = selectors.DefaultSelector()
    done_count = 0
    counts = collections.Counter()

    def note(rec):
        nonlocal done_count
        records.append(rec)
        done_count += 1
        counts[rec["outcome"]] += 1
        if progress and (rec["outcome"] not in ("agree", "skip") or done_count % 50 == 0 or done_count == total):
            el = time.monotonic() - t_start
            extra = ""
            if rec["outcome"] not in ("agree", "skip"):
                extra = f" {rec['outcome']}: {rec['op']} {rec['dtype']}: {one_line(rec.get('reason', ''), 160)}"
            print(f"[{done_count}/{total} {el:6.0f}s {dict(counts)}]{extra}", file=log, flush=True)

    def start(slot: Slot, n: int):
        slot.batch = list(itertools.islice(slot.tasks, tasks_per_worker))
        slot.task_file = os.path.join(tmpdir, f"tasks_{n}_{time.monotonic_ns()}.json")
        with open(slot.task_file, "w") as f:
            json.dump(slot.batch, f)
        slot.stderr_path = slot.task_file.replace(".json", ".stderr")
        r, w = os.pipe()
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", slot.task_file, "--fd", str(w),
               "--limit-samples", str(limit_samples), "--threads", str(threads)]
        with open(slot.stderr_path, "wb") as err:
            slot.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, pass_fds=(w,),
                                         env=env)
        os.close(w)
        slot.fd, slot.buf, slot.current = r, b"", None
        slot.deadline = time.monotonic() + 120.0  # startup: importing torch and op_db
        sel.register(r, selectors.EVENT_READ, slot)

    def stderr_tail(slot: Slot) -> str:
        try:
            with open(slot.stderr_path, "rb") as f:
                data = f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""
        lines = [ln.strip() for ln in data.splitlines() if ln.strip()]
        fatal = [i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")]
        if fatal:  # faulthandler: the error and the innermost Python frames
            i = fatal[-1]
            frames = [re.sub(r'File "[^"]*/((site-packages/)?[^/"]+/[^/"]+)"', r"\1", ln)
                      for ln in lines[i + 1:] if ln.startswith("File ")][:2]
            return one_line(" | ".join([lines[i]] + frames), 300)
        lines = [ln for ln in lines if "Warning" not in ln]
        return one_line(" | ".join(lines[-3:]), 300)

    def stop(slot: Slot, why: str):
        """The worker died (why='crash') or hung (why='timeout')."""
        try:
            sel.unregister(slot.fd)
        except (KeyError, ValueError):
            pass
        os.close(slot.fd)
        if why == "timeout" and slot.proc.poll() is None:
            slot.proc.kill()
        rc = slot.proc.wait()
        if slot.current is not None:
            key, d = slot.current
            slot.tasks.popleft()
            if why == "timeout":
                reason = f"no result within {timeout:g} s (during the {slot.phase}); worker killed"
            else:
                died = f"killed by signal {-rc} ({signal_name(-rc)})" if rc < 0 else f"exited with {rc}"
                reason = f"worker {died} during the {slot.phase}: {stderr_tail(slot)}"
            rec = {"op": key, "dtype": d, "outcome": why, "reason": reason}
            if slot.sample:
                rec["reason"] = f"sample {slot.sample[0]}: {reason}"
                rec["sample"] = slot.sample[1]
            note(rec)
            slot.failures_without_progress = 0
        elif slot.tasks and slot.proc.returncode not in (0, 3):
            slot.failures_without_progress += 1
            if slot.failures_without_progress >= 3:
                msg = f"worker could not start (exit {rc}): {stderr_tail(slot)}"
                while slot.tasks:
                    key, d = slot.tasks.popleft()
                    note({"op": key, "dtype": d, "outcome": "error", "reason": "sweep: " + msg})
        slot.proc = None

    for n, slot in enumerate(slots):
        if slot.tasks:
            start(slot, n)
    while any(s.proc is not None for s in slots):
        now = time.monotonic()
        wait = max(0.05, min(s.deadline for s in slots if s.proc is not None) - now)
        for skey, _ in sel.select(timeout=min(wait, 5.0)):
            slot: Slot = skey.data
            chunk = os.read(slot.fd, 65536)
            if not chunk:
                stop(slot, "crash")
                continue
            slot.buf += chunk
            while b"\n" in slot.buf:
                line, slot.buf = slot.buf.split(b"\n", 1)
                msg = json.loads(line)
                if "phase" in msg:
                    slot.phase = msg["phase"]
                    if "sample" in msg:
                        slot.sample = msg["sample"]
                elif "start" in msg:
                    slot.current = tuple(msg["start"])
                    slot.sample, slot.phase = None, "sample generation"
                    slot.deadline = time.monotonic() + timeout
                elif "done" in msg:
                    rec = msg["done"]
                    if slot.tasks and tuple(slot.tasks[0]) == (rec["op"], rec["dtype"]):
                        slot.tasks.popleft()
                    slot.current = None
                    slot.failures_without_progress = 0
                    slot.deadline = time.monotonic() + timeout
                    note(rec)
                elif "ready" in msg:
                    slot.deadline = time.monotonic() + timeout
        now = time.monotonic()
        for n, slot in enumerate(slots):
            if slot.proc is None:
                continue
            if now > slot.deadline and slot.proc.poll() is None:
                stop(slot, "timeout")
        for n, slot in enumerate(slots):
            if slot.proc is None and slot.tasks:
                start(slot, n)
    sel.close()
    shutil.rmtree(tmpdir, ignore_errors=True)
    return {
        "records": records,
        "seconds": round(time.monotonic() - t_start, 1),
        "config": {"dtypes": dtypes, "limit_samples": limit_samples, "timeout": timeout, "workers": workers,
                   "threads": threads, "ops_filter": ops_filter, "max_ops": max_ops},
    }


# --------------------------------------------------------------------------- summary and report


def summarize(records: list[dict], dtypes: Iterable[str]) -> dict:
    def pct(c):
        n = sum(c[o] for o in COUNTED)
        return round(100.0 * c["agree"] / n, 2) if n else 100.0

    overall = collections.Counter(r["outcome"] for r in records)
    per_dtype = {d: collections.Counter(r["outcome"] for r in records if r["dtype"] == d) for d in dtypes}
    return {
        "overall": {o: overall[o] for o in OUTCOMES},
        "agreement_pct": pct(overall),
        "counted": sum(overall[o] for o in COUNTED),
        "per_dtype": {d: {**{o: c[o] for o in OUTCOMES}, "agreement_pct": pct(c)} for d, c in per_dtype.items()},
        "ops": len({r["op"] for r in records}),
    }


_NORMALIZE = [
    (re.compile(r"^sample \d+: "), ""),
    (re.compile(r"aten::[\w.]+"), "aten::<op>"),
    (re.compile(r"0x[0-9a-f]+"), "<addr>"),
    (re.compile(r"\d+(\.\d+)?(e[-+]?\d+)?"), "N"),
    (re.compile(r"\[[^\]]*\]"), "[...]"),
    (re.compile(r"\([^)]*\)"), "(...)"),
]


# Diagnoses of recurring failures, matched against "op [dtype] outcome: reason". They only
# show in the report while the failure they describe occurs.
KNOWN_CAUSES = (
    (r"convolution_overrideable not implemented",
     "PrivateUse1 convolutions dispatch to `aten::convolution_overrideable` (ConvBackend::Overrideable), "
     "which has no CPU kernel for the boxed fallback to run. Needs sunrise registrations of "
     "`convolution_overrideable` / `convolution_backward_overrideable` (e.g. running `at::_convolution` / "
     "`at::convolution_backward` on CPU views)."),
    (r"^(fft\.(i?hfft|ifft)\w*) .*SIGSEGV",
     "Materializing a sunrise tensor with the conj or neg bit set (ifft/hfft of real input return lazy "
     "`conj()` views) overflows the stack: the Conjugate/Negative math-bit fallbacks intercept "
     "`aten::_copy_from`, resolve the bit with `clone()` -> `copy_` -> `_copy_from` -> ... forever. Registering "
     "`_copy_from` (and `_copy_from_and_resize`) as fallthrough for the Conjugate and Negative keys fixes it; "
     "the sunrise copy kernel already honours the bits. Repro: "
     "`torch._neg_view(torch.ones(2, device='sunrise')).cpu()`."),
    (r"^(nn\.functional\.layer_norm|native_layer_norm|nn\.functional\.group_norm|native_group_norm|addr) "
     r"\[bfloat16\] mismatch",
     "On sunrise these ops run their CompositeExplicitAutograd decomposition (`math_native_layer_norm` -> "
     "`native_batch_norm` + `addcmul`, `math_group_norm`, `math_addr`), which the dispatcher prefers over the "
     "boxed CPU fallback; the decomposition rounds intermediates to bfloat16 where the CPU kernel accumulates "
     "in float. Registering these ops for PrivateUse1 to the CPU fallback (or a native kernel) would match CPU."),
    (r"^nn\.functional\.scaled_dot_product_attention \[bfloat16\] mismatch",
     "On sunrise SDPA takes the math path (`bmm` + `_softmax` in bfloat16, through the fallback) where CPU runs "
     "its fused flash-attention kernel with float accumulation."),
    (r"^nn\.functional\.linear_cross_entropy\S* \[bfloat16\] mismatch",
     "By design in PyTorch: `LinearCrossEntropyOptions` resolves `acc_policy='auto'` per device type "
     "(`accurate` on cpu, `compact` elsewhere), so a non-CPU device accumulates differently."),
    (r"Cannot access storage of SparseTensorImpl|SparseCsrsunrise|Sparsesunrise",
     "Sparse layouts are not supported on sunrise: the fallback cannot wrap a sparse CPU result "
     "(it looks up its storage) and there are no SparseCsrPrivateUse1 kernels."),
)


def diagnosis_of(rec: dict) -> str:
    text = f"{rec['op']} [{rec['dtype']}] {rec['outcome']}: {rec.get('reason', '')}"
    for pattern, diagnosis in KNOWN_CAUSES:
        if re.search(pattern, text):
            return diagnosis
    return ""


def cause_of(rec: dict) -> str:
    reason = rec.get("reason", "")
    if rec["outcome"] == "mismatch":
        if "CPU raised" in reason:
            return "mismatch: CPU raised but sunrise did not"
        if "expected sunrise" in reason:
            return "mismatch: result tensor not on the sunrise device"
        if "inputs after the op differ" in reason:
            return "mismatch: inputs (in-place / out=) differ after the op"
        m = re.search(r"(The values for attribute '[^']+' do not match|Tensor-likes are not (close|equal)|"
                      r"Scalars are not (close|equal)|[A-Za-z ]+ mismatch)", reason)
        return "mismatch: " + (m.group(1) if m else one_line(reason, 80))
    if rec["outcome"] in ("crash", "timeout"):
        return rec["outcome"]
    text = reason
    for pat, rep in _NORMALIZE:
        text = pat.sub(rep, text)
    return f"{rec['outcome']}: " + one_line(text, 110)


def print_summary(result: dict, file=sys.stdout) -> dict:
    dtypes = result["config"]["dtypes"]
    s = summarize(result["records"], dtypes)
    o = s["overall"]
    print(f"\nOpInfo sweep: {s['ops']} OpInfos x {len(dtypes)} dtypes in {result['seconds']:.0f} s", file=file)
    print("overall: " + ", ".join(f"{k}={v}" for k, v in o.items()) +
          f"  -> agreement {s['agreement_pct']:.2f}% of {s['counted']}", file=file)
    for d, c in s["per_dtype"].items():
        print(f"  {d:9s} agreement {c['agreement_pct']:6.2f}%  " +
              ", ".join(f"{k}={c[k]}" for k in OUTCOMES), file=file)
    bad = sorted((r for r in result["records"] if r["outcome"] in COUNTED and r["outcome"] != "agree"),
                 key=lambda r: (r["op"], r["dtype"]))
    if bad:
        print(f"\nnot agreeing ({len(bad)}):", file=file)
        for r in bad:
            print(f"  {r['outcome']:8s} {r['op']} [{r['dtype']}]: {one_line(r.get('reason', ''), 200)}", file=file)
    return s


def samples_text(limit) -> str:
    return f"its first {limit}" if limit and limit > 0 else "all its"


def git_revision() -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {rev}" + (" with local changes" if dirty else "") if rev else "unknown"


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def write_report(result: dict, path: str, command: str) -> None:
    import importlib.metadata as md

    dtypes = result["config"]["dtypes"]
    s = summarize(result["records"], dtypes)
    recs = result["records"]
    bad = sorted((r for r in recs if r["outcome"] in COUNTED and r["outcome"] != "agree"),
                 key=lambda r: (r["op"], dtypes.index(r["dtype"]) if r["dtype"] in dtypes else 0))
    try:
        torch_version = md.version("torch")
    except md.PackageNotFoundError:
        torch_version = "?"
    L = []
    L.append("# OpInfo agreement sweep: sunrise vs CPU\n")
    L.append("Generated by `tests/opinfo/sweep.py`; do not edit by hand. Regenerate with:\n")
    L.append(f"```\n{command}\n```\n")
    L.append(
        "Every OpInfo in `torch.testing._internal.common_methods_invocations.op_db`, for each dtype it "
        "supports on CPU, runs "
        f"{samples_text(result['config']['limit_samples'])} sample inputs "
        "(generated on CPU with a fixed per-op seed) on CPU "
        "and on sunrise (samples copied with their exact strides, offsets and storage sharing), and compares "
        "the results with `torch.testing.assert_close(equal_nan=True)` (OpInfo tolerance overrides where "
        "present, else the default per-dtype tolerances; exact for integer and bool). Result tensors must be "
        "on the sunrise device, and the sample tensors must agree afterwards too (in-place ops, out=). A sample "
        "for which CPU raises must raise on sunrise as well. Random ops and ops returning uninitialized memory "
        "are compared on shape and dtype only. Each op runs in a worker subprocess with a "
        f"{result['config']['timeout']:g} s timeout, so a crash is recorded and the sweep goes on.\n")
    L.append(f"- Date: {datetime.date.today().isoformat()}; torch {torch_version}; Python "
             f"{platform.python_version()}; {os.cpu_count()} CPUs; {result['config']['workers']} worker(s), "
             f"{result['config']['threads']} thread(s) each")
    L.append(f"- Source: {git_revision()}")
    L.append(f"- Wall time: {result['seconds']:.0f} s ({result['seconds'] / 60:.1f} min)")
    L.append(f"- OpInfos: {s['ops']}; (op, dtype) pairs run: {s['counted']}; skipped: {s['overall']['skip']}\n")
    L.append("## Summary\n")
    L.append(f"**Agreement: {s['agreement_pct']:.2f}%** "
             f"({s['overall']['agree']} of {s['counted']} (op, dtype) pairs; "
             "agreement = agree / (agree + mismatch + error + crash + timeout)).\n")
    L.append("| dtype | agree | mismatch | error | crash | timeout | skip | agreement |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for d, c in s["per_dtype"].items():
        L.append(f"| {d} | {c['agree']} | {c['mismatch']} | {c['error']} | {c['crash']} | {c['timeout']} | "
                 f"{c['skip']} | {c['agreement_pct']:.2f}% |")
    o = s["overall"]
    L.append(f"| **all** | {o['agree']} | {o['mismatch']} | {o['error']} | {o['crash']} | {o['timeout']} | "
             f"{o['skip']} | **{s['agreement_pct']:.2f}%** |\n")
    crashes = [r for r in bad if r["outcome"] in ("crash", "timeout")]
    L.append("## Crashes and timeouts\n")
    if crashes:
        for r in crashes:
            L.append(f"- `{r['op']}` [{r['dtype']}] {r['outcome']}: {md_escape(r.get('reason', ''))}")
    else:
        L.append("None: no worker process died or hung.")
    L.append("")
    if bad:
        L.append("## Failure causes\n")
        L.append("Non-agreeing pairs grouped by normalized reason (numbers, shapes and op names elided).\n")
        L.append("| count | cause | examples |")
        L.append("|---:|---|---|")
        groups = collections.defaultdict(list)
        for r in bad:
            groups[cause_of(r)].append(r)
        for cause, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            ex = ", ".join(f"`{r['op']}`[{r['dtype']}]" for r in rs[:4]) + (" ..." if len(rs) > 4 else "")
            L.append(f"| {len(rs)} | {md_escape(cause)} | {ex} |")
        L.append("")
        diagnosed = collections.defaultdict(list)
        for r in bad:
            dx = diagnosis_of(r)
            if dx:
                diagnosed[dx].append(r)
        if diagnosed:
            L.append("### Diagnoses\n")
            for dx, rs in sorted(diagnosed.items(), key=lambda kv: -len(kv[1])):
                ops = sorted({r["op"] for r in rs})
                L.append(f"- **{len(rs)} pairs** ({', '.join(f'`{o}`' for o in ops)}): {dx}")
            L.append("")
        L.append("## Everything that does not agree\n")
        L.append("`sample` is the first failing sample: input, args and kwargs as `T[shape]:dtype` "
                 "(plus `/stride`, `/off` and values for small tensors).\n")
        L.append("| op | dtype | outcome | reason | sample |")
        L.append("|---|---|---|---|---|")
        for r in bad:
            L.append(f"| `{r['op']}` | {r['dtype']} | {r['outcome']} | {md_escape(one_line(r.get('reason', ''), 260))} "
                     f"| {md_escape(one_line(r.get('sample', ''), 160))} |")
        L.append("")
    gen_skips = sorted((r for r in recs if r["outcome"] == "skip" and r.get("reason") != "dtype not supported on CPU"),
                       key=lambda r: (r["op"], r["dtype"]))
    if gen_skips:
        L.append("## Skipped because CPU could not produce samples\n")
        L.append("Not counted: the CPU side itself failed to generate sample inputs.\n")
        for r in gen_skips:
            L.append(f"- `{r['op']}` [{r['dtype']}]: {md_escape(r.get('reason', ''))}")
        L.append("")
    vacuous = sorted((r for r in recs if r["outcome"] == "agree" and r.get("samples")
                      and r.get("cpu_raised") == r.get("samples")), key=lambda r: (r["op"], r["dtype"]))
    if vacuous:
        L.append("## Agreeing only because both sides raise\n")
        L.append("CPU raised on every sample (e.g. CUDA-only ops) and sunrise raised too; counted as agreement.\n")
        by_op = collections.defaultdict(list)
        for r in vacuous:
            by_op[r["op"]].append(r["dtype"])
        L.append(", ".join(f"`{o}` ({', '.join(ds)})" for o, ds in by_op.items()) + "\n")
    kept = sorted({r["op"] for r in recs if r.get("kept_on_cpu")})
    if kept:
        L.append("## Sample tensors kept on the CPU\n")
        L.append("Tensors that `sample_inputs` creates on the CPU whatever the device (found by generating the "
                 "samples for device `meta`) stay on the CPU, as in PyTorch's CUDA OpInfo tests: "
                 + ", ".join(f"`{o}`" for o in kept) + "\n")
    meta = sorted({r["op"] for r in recs if r.get("metadata_only")})
    if meta:
        L.append("## Compared on shape and dtype only (random or uninitialized outputs)\n")
        L.append(", ".join(f"`{m}`" for m in meta) + "\n")
    rnd = sorted({r["op"] for r in recs if r.get("random_samples") and not r.get("metadata_only")})
    if rnd:
        L.append("Also compared on shape and dtype only, for the samples that run a seeded random ATen op "
                 "(e.g. `dropout_p > 0`; sunrise has its own generator, as CUDA does): "
                 + ", ".join(f"`{m}`" for m in rnd) + "\n")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default=",".join(DEFAULT_DTYPES), help="comma-separated (default: %(default)s)")
    p.add_argument("--ops", default=None,
                   help="comma-separated substrings of OpInfo names (name.variant); '=name' matches exactly")
    p.add_argument("--quick", action="store_true", help="only the representative subset used by the pytest")
    p.add_argument("--limit-samples", type=int, default=4,
                   help="samples per (op, dtype), 0 for all (default: %(default)s)")
    p.add_argument("--max-ops", type=int, default=None, help="only the first N OpInfos (after --ops)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per (op, dtype) (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, 1 or 2 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default: %(default)s)")
    p.add_argument("--report", default=None, help="write a Markdown report here (e.g. docs/opinfo_sweep.md)")
    p.add_argument("--json", default=None, help="write all records as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    # internal: worker mode
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker_main(args.worker, args.fd, args.limit_samples, args.threads)

    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    ops_filter = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    result = run_sweep(dtypes=dtypes, ops_filter=ops_filter, max_ops=args.max_ops,
                       limit_samples=args.limit_samples, timeout=args.timeout, workers=args.workers,
                       threads=args.threads, exact_ops=QUICK_OPS if args.quick else None,
                       progress=not args.quiet)
    summary = print_summary(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "summary": summary}, f, indent=1)
    if args.report:
        given = list(argv if argv is not None else sys.argv[1:])
        shown = []
        for a in given:  # the report shows how to regenerate it, not where the JSON went
            if shown and shown[-1] == "--json":
                shown.pop()
                continue
            if not a.startswith("--json="):
                shown.append(a)
        cmd = "python -m tests.opinfo.sweep " + " ".join(shown)
        write_report(result, args.report, cmd.strip())
        print(f"report written to {args.report}")
    return 0 if summary["overall"]["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
