"""What the OpInfo harness runs by default, and helpers its drivers share. Imports no torch.

The drivers (``sweep.py``, ``full_run.py``, ``coverage_report.py``) must not import torch: a broken
build of the extension (loaded with torch, through its backend entry point) would take them down
instead of being recorded. ``checks.py``, which does import torch, runs in their test processes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE_TYPE = "sunrise"

# The checks of tests/test_opinfo_device.py (checks.Checker), in this order everywhere.
KINDS = ("forward", "noncontiguous", "out", "inplace", "variants", "grad")

# ------------------------------------------------------------------ tests/test_opinfo_device.py
# The fast representative subset run by default (OpInfo full names). It covers every family
# of op (elementwise unary / binary / ternary, comparisons, reductions, scans, matmul and
# linalg, convolution, pooling, normalization, losses, activations, indexing / scatter /
# gather, views and shape ops, factories, sorting, data-dependent shapes, FFT, random ops, ops
# without a sunrise kernel)
# and every kind of check (many have out= and in-place variants and gradients).
QUICK_OPS = (
    "add", "mul", "div.no_rounding_mode", "pow", "abs", "exp", "sqrt", "sin", "sigmoid",
    "clamp", "where", "addcmul", "lerp", "eq", "isnan", "logical_and", "bitwise_and",
    "sum", "mean", "amax", "argmax", "var", "norm", "cumsum", "logsumexp",
    "matmul", "addmm", "bmm", "linalg.inv", "nn.functional.linear", "nn.functional.conv2d",
    "nn.functional.avg_pool2d", "nn.functional.layer_norm", "nn.functional.batch_norm",
    "nn.functional.cross_entropy", "softmax", "nn.functional.gelu",
    "nn.functional.embedding", "index_select", "index_add", "gather", "scatter_add", "masked_fill", "index_put",
    "cat", "reshape", "transpose", "as_strided", "expand", "unfold", "flip",
    "topk", "sort", "nonzero", "masked_select", "arange", "full", "zeros_like",
    "fft.fft", "nn.functional.dropout",
    # No sunrise kernel: the fallback's queued path (in-place, out=, host shape rule, linalg).
    "index_fill", "kthvalue", "histc", "cummax", "linspace", "linalg.solve_triangular", "nn.functional.huber_loss",
)
# dtypes of the default subset (SUNRISE_OPINFO_OPS and the full run use every dtype the op supports on CPU).
QUICK_DTYPES = ("float32", "bfloat16", "int64", "bool", "complex64")
QUICK_GRAD_DTYPES = ("float32", "complex64")
# dtypes of the variants check, always (TestCommon.test_variant_consistency_eager's).
VARIANT_DTYPES = ("float32", "complex64")

# ------------------------------------------------------------------ the sweep (sweep.py)
# dtypes of the sweep (each only where the OpInfo supports it on CPU).
SWEEP_DTYPES = ("float32", "int64", "bool", "bfloat16")
# The subset of tests/test_opinfo_sweep.py and `sweep.py --quick` (exact full names).
SWEEP_QUICK_OPS = (
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

# ------------------------------------------------------------------ fault injection
# To test the harness itself: "crash:T,hang:T,wrong:T" (the sweep also "exit:T") where T is OP,
# OP/KIND or OP/KIND/DTYPE (OP a full name). crash = SIGSEGV, hang = sleep, exit = exit status 7,
# wrong = sunrise results + 1 (logical not for bool).
INJECT_ENV = "SUNRISE_OPINFO_INJECT"  # tests/test_opinfo_device.py and full_run.py
SWEEP_INJECT_ENV = "SUNRISE_SWEEP_INJECT"  # sweep.py


def injected(key: str, kind: str, dtype: str, env: str = INJECT_ENV) -> str | None:
    """The fault the variable ``env`` injects into (op ``key``, check ``kind``, ``dtype``), if any."""
    for item in os.environ.get(env, "").split(","):
        fault, _, target = item.partition(":")
        if target in (key, f"{key}/{kind}", f"{key}/{kind}/{dtype}"):
            return fault
    return None


# ------------------------------------------------------------------ text


def one_line(text, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exc_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    first = msg[0] if msg else ""
    return one_line(f"{type(e).__name__}: {first}", 240)


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


# ------------------------------------------------------------------ processes


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


def tail(path: str, limit: int = 3000) -> str:
    """The last ``limit`` bytes of a log file, decoded ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def crash_summary(log: str) -> str:
    """The fatal error and the innermost frames of the crashing thread (faulthandler output),
    else the last lines of the log."""
    lines = [ln.strip().lstrip(".") for ln in log.splitlines() if ln.strip().strip(".")]
    fatal = [i for i, ln in enumerate(lines) if "Fatal Python error" in ln]
    if fatal:
        i = fatal[-1]
        cur = next((j for j in range(i, len(lines)) if lines[j].startswith("Current thread")), i)
        frames = [re.sub(r'File "[^"]*/(site-packages/)?', 'File "', ln)
                  for ln in lines[cur + 1:] if ln.startswith("File ")][:4]
        return " | ".join([lines[i][lines[i].index("Fatal"):]] + frames)[:700]
    return " | ".join(lines[-4:])[:700]


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {rev}" + (" with local changes" if dirty else "") if rev else "unknown"
