"""Compare with CPU: re-run every op executed on sunrise on the CPU and compare the results.

A debugging mode for "the model trains on the CPU but not on sunrise"::

    import torch_sunrise.debug

    with torch_sunrise.debug.compare_with_cpu() as cmp:      # rtol=, atol=, on_mismatch="warn"
        loss = model(x.to("sunrise")).loss
        loss.backward()
    print(cmp.summary())

or, for a whole script, ``SUNRISE_COMPARE_CPU=1 python train.py`` (``=warn`` to keep going);
the summary is then printed to stderr at exit. Guide: docs/debugging.md, "Compare with CPU".

How it works. :class:`_CompareMode` is a ``TorchDispatchMode``: it sees every ATen op below
autograd, in the forward and, because PyTorch hands dispatch modes to autograd's device threads,
in the backward. For each op that touches the sunrise device (a sunrise tensor or a
``device="sunrise"`` argument) it

1. copies the arguments to the CPU *before* the op runs (in-place and ``out=`` ops overwrite
   them): per storage, the byte range the arguments reach, so the CPU copies keep their
   strides, storage offsets and aliasing (``x.add_(x)``, an ``out=`` view of an input);
2. runs the op on sunrise, then the same ``OpOverload`` on the copies;
3. compares every output and every argument the schema marks as written (``Tensor(a!)``):
   shape, dtype, and values within a tolerance (NaN equal to NaN; integers and bools exactly).

The first difference raises :class:`SunriseCompareError` (or warns, :class:`SunriseCompareWarning`)
naming the op, its arguments, the differences and the Python code that called it. Ops whose
results cannot be reproduced on the CPU are skipped with a reason (random numbers, uninitialized
memory, arguments that cannot be copied, ops outside ``aten``); :meth:`CompareReport.summary` lists
them.

Nested calls do not recurse: while ``__torch_dispatch__`` runs, PyTorch has popped the mode, so
the copies, the sunrise call and the CPU reference run unobserved.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import math
import os
import sys
import threading
import traceback
import warnings
from typing import Any, Iterator, Literal, Optional, Sequence

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = [
    "CompareReport",
    "Mismatch",
    "OpStats",
    "SunriseCompareError",
    "SunriseCompareWarning",
    "compare_with_cpu",
    "env_report",
]

_DEVICE = "sunrise"

OnMismatch = Literal["raise", "warn"]

# torch.testing.assert_close's defaults, (rtol, atol) per dtype; other dtypes (integers, bool,
# float8) compare exactly.
_DEFAULT_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
    torch.complex32: (1e-3, 1e-5),
    torch.complex64: (1.3e-6, 1e-5),
    torch.complex128: (1e-7, 1e-7),
}

# Ops whose results are (partly) uninitialized memory: nothing to compare.
_UNINITIALIZED = frozenset({
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::empty_permuted",
    "aten::new_empty", "aten::new_empty_strided", "aten::resize_", "aten::resize_as_",
    "aten::_resize_output_", "aten::_empty_affine_quantized", "aten::_empty_per_channel_affine_quantized",
})

# Ops that address their argument's storage directly (a storage offset, strides): the CPU copy
# holds the whole storage, not only the bytes the argument's view reaches.
_WHOLE_STORAGE = frozenset({
    "aten::as_strided", "aten::as_strided_", "aten::as_strided_copy", "aten::as_strided_scatter",
    "aten::_reshape_alias", "aten::set_",
})

# Argument types that cannot be copied to the CPU; an op taking one is skipped.
_UNCOPYABLE = (torch.Generator, torch.Stream, torch.Event, torch.UntypedStorage,
               torch.storage.TypedStorage, torch.ScriptObject)

# Mismatches kept in CompareReport.mismatches (all of them are counted).
_MAX_KEPT_MISMATCHES = 100
# Distinct skip reasons kept per op (error messages can differ call by call).
_MAX_SKIP_REASONS = 8
# Innermost user frames shown in a mismatch message.
_MAX_FRAMES = 12

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class SunriseCompareError(RuntimeError):
    """An op gave different results on sunrise and on the CPU (``on_mismatch="raise"``).

    ``str(error)`` names the op, its arguments, the output that differs, the largest absolute and
    relative differences and where, the tolerances, and the Python code that called the op;
    ``error.mismatch`` holds the same as a :class:`Mismatch`."""

    def __init__(self, mismatch: "Mismatch") -> None:
        super().__init__(mismatch.message)
        self.mismatch = mismatch


class SunriseCompareWarning(UserWarning):
    """An op gave different results on sunrise and on the CPU (``on_mismatch="warn"``); warned
    once per op and call site, with the text of :class:`SunriseCompareError`."""


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One call whose sunrise result differs from the CPU's.

    ``what`` names the output (``"output 0"``, ``"argument 'self' (written in place)"``);
    ``max_abs_diff``/``max_rel_diff`` are ``math.inf`` where NaN or infinities differ, ``nan``
    where only the shape or dtype differs; ``call_site`` is the innermost user frame
    (``"file:line"``) or the autograd node for a backward op."""

    op: str
    what: str
    max_abs_diff: float
    max_rel_diff: float
    call_site: str
    message: str


@dataclasses.dataclass
class OpStats:
    """Per-op counters of a :class:`CompareReport`.

    ``calls`` = ``compared`` + ``skipped`` (a call that raised on sunrise counts as skipped);
    ``bitwise_equal`` counts compared calls whose every value had the CPU's exact bits (NaN equal
    to NaN); ``mismatches`` counts compared calls outside the tolerance; the differences are the
    largest over the compared calls."""

    calls: int = 0
    compared: int = 0
    bitwise_equal: int = 0
    skipped: int = 0
    mismatches: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    skip_reasons: dict[str, int] = dataclasses.field(default_factory=dict)


class CompareReport:
    """What a compare-with-CPU run saw, per op; returned by :func:`compare_with_cpu`.

    Safe to read while the mode runs (backward ops are recorded from autograd's threads)."""

    def __init__(self, rtol: Optional[float], atol: Optional[float], on_mismatch: OnMismatch) -> None:
        if (rtol is None) != (atol is None):
            raise ValueError("compare_with_cpu: pass both rtol and atol, or neither (per-dtype defaults)")
        if rtol is not None and (rtol < 0 or atol < 0):  # type: ignore[operator]
            raise ValueError(f"compare_with_cpu: rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
        if on_mismatch not in ("raise", "warn"):
            raise ValueError(f"compare_with_cpu: on_mismatch must be 'raise' or 'warn', got {on_mismatch!r}")
        self.rtol = rtol
        self.atol = atol
        self.on_mismatch: OnMismatch = on_mismatch
        self._lock = threading.Lock()  # guards everything below
        self._ops: dict[str, OpStats] = {}
        self._mismatches: list[Mismatch] = []
        self._warned: set[tuple[str, str]] = set()

    @property
    def ops(self) -> dict[str, OpStats]:
        """``{op name: OpStats}`` (a copy), op names like ``"aten::sigmoid.default"``."""
        with self._lock:
            return {name: dataclasses.replace(s, skip_reasons=dict(s.skip_reasons))
                    for name, s in self._ops.items()}

    @property
    def mismatches(self) -> list[Mismatch]:
        """The first mismatches, in order (at most 100 kept; ``mismatch_count`` counts all)."""
        with self._lock:
            return list(self._mismatches)

    @property
    def mismatch_count(self) -> int:
        """How many compared calls differed beyond the tolerance."""
        with self._lock:
            return sum(s.mismatches for s in self._ops.values())

    def reset(self) -> None:
        """Forget everything recorded so far (and re-arm the once-per-call-site warnings)."""
        with self._lock:
            self._ops.clear()
            self._mismatches.clear()
            self._warned.clear()

    def summary(self) -> str:
        """A table with one row per op: calls, compared, bitwise equal, skipped, largest absolute
        and relative difference, mismatches; then the skip reasons. Ops with mismatches first."""
        ops = self.ops
        tolerance = ("per-dtype defaults (torch.testing.assert_close)" if self.rtol is None
                     else "bitwise" if self.rtol == 0 and self.atol == 0
                     else f"rtol={self.rtol:g}, atol={self.atol:g}")
        total = OpStats()
        for s in ops.values():
            total.calls += s.calls
            total.compared += s.compared
            total.bitwise_equal += s.bitwise_equal
            total.skipped += s.skipped
            total.mismatches += s.mismatches
        lines = [
            "== sunrise compare-with-CPU summary ==",
            f"{len(ops)} ops, {total.calls} calls: {total.compared} compared ({total.bitwise_equal} bitwise "
            f"equal), {total.skipped} skipped, {total.mismatches} mismatches; tolerance: {tolerance}",
        ]
        if not ops:
            lines.append("no op ran on sunrise")
            return "\n".join(lines)
        header = ("op", "calls", "compared", "bitwise", "skipped", "max abs diff", "max rel diff", "mismatches")
        rows = [header]
        for name, s in sorted(ops.items(), key=lambda kv: (-kv[1].mismatches, kv[0])):
            compared = s.compared > 0
            rows.append((name, str(s.calls), str(s.compared), str(s.bitwise_equal), str(s.skipped),
                         _fmt(s.max_abs_diff) if compared else "-", _fmt(s.max_rel_diff) if compared else "-",
                         str(s.mismatches)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
        skipped = [(name, reason, n) for name, s in sorted(ops.items()) for reason, n in s.skip_reasons.items()]
        if skipped:
            lines.append("skipped:")
            lines.extend(f"  {name} ({n} call{'s' if n != 1 else ''}): {reason}" for name, reason, n in skipped)
        return "\n".join(lines)

    # -- recording (called by the mode) --

    def _row(self, op: str) -> OpStats:
        row = self._ops.get(op)
        if row is None:
            row = self._ops[op] = OpStats()
        return row

    def _record_skip(self, op: str, reason: str) -> None:
        with self._lock:
            row = self._row(op)
            row.calls += 1
            row.skipped += 1
            if reason not in row.skip_reasons and len(row.skip_reasons) >= _MAX_SKIP_REASONS:
                reason = "other reasons"
            row.skip_reasons[reason] = row.skip_reasons.get(reason, 0) + 1

    def _record_compared(self, op: str, bitwise: bool, max_abs: float, max_rel: float,
                         mismatch: Optional[Mismatch]) -> bool:
        """Records a compared call; returns whether its mismatch should be warned about (the
        first one from this op and call site)."""
        with self._lock:
            row = self._row(op)
            row.calls += 1
            row.compared += 1
            row.bitwise_equal += bitwise
            row.max_abs_diff = _nan_max(row.max_abs_diff, max_abs)
            row.max_rel_diff = _nan_max(row.max_rel_diff, max_rel)
            if mismatch is None:
                return False
            row.mismatches += 1
            if len(self._mismatches) < _MAX_KEPT_MISMATCHES:
                self._mismatches.append(mismatch)
            key = (op, mismatch.call_site)
            first = key not in self._warned
            self._warned.add(key)
            return first


@contextlib.contextmanager
def compare_with_cpu(rtol: Optional[float] = None, atol: Optional[float] = None,
                     on_mismatch: OnMismatch = "raise", print_summary: bool = False) -> Iterator[CompareReport]:
    """Inside, every op that runs on sunrise is re-run on CPU copies of its inputs and compared.

    Args:
        rtol, atol: the tolerance of floating-point (and complex) values, as in
            ``torch.testing.assert_close``: ``|sunrise - cpu| <= atol + rtol * |cpu|``. Both None
            (the default): assert_close's per-dtype defaults (float32: 1.3e-6 and 1e-5;
            bfloat16: 1.6e-2 and 1e-5; float16: 1e-3 and 1e-5). ``rtol=0, atol=0``: bitwise
            (``-0.0`` differs from ``0.0``). Integers and bools always compare exactly.
        on_mismatch: ``"raise"`` raises :class:`SunriseCompareError` at the first difference,
            from the op's call (the op has already run on sunrise); ``"warn"`` warns
            (:class:`SunriseCompareWarning`, once per op and call site) and goes on.
        print_summary: print :meth:`CompareReport.summary` to stderr when the block exits.

    Yields:
        The :class:`CompareReport`, which stays readable after the block.

    Covers the calling thread and the backward of autograd graphs run from it (dispatch modes
    are thread-local; PyTorch hands them to autograd's threads). Every op waits for the device
    (the copies synchronize): slow, and it can hide missing stream synchronization.
    """
    report = CompareReport(rtol, atol, on_mismatch)
    try:
        with _CompareMode(report):
            yield report
    finally:
        if print_summary:
            print(report.summary(), file=sys.stderr)


_env_report: Optional[CompareReport] = None


def env_report() -> Optional[CompareReport]:
    """The report of the mode that ``SUNRISE_COMPARE_CPU`` enabled at ``import torch_sunrise``
    (its summary is printed at exit), or None when the variable is unset."""
    return _env_report


def _enable_from_env(value: str) -> None:
    """``SUNRISE_COMPARE_CPU=1|raise|warn``: enters the mode on the importing thread for the rest
    of the process and prints the summary to stderr at exit."""
    global _env_report
    mode = value.strip().lower()
    if mode not in ("1", "raise", "warn"):
        warnings.warn(f"SUNRISE_COMPARE_CPU={value!r} is not one of 1, raise, warn, 0; using raise",
                      RuntimeWarning, stacklevel=2)
    report = CompareReport(None, None, "warn" if mode == "warn" else "raise")
    dispatch_mode = _CompareMode(report)
    dispatch_mode.__enter__()
    _env_report = report

    def print_summary_at_exit() -> None:
        # Stop comparing first: later exit handlers may still touch the device.
        from torch.utils._python_dispatch import _get_current_dispatch_mode

        if _get_current_dispatch_mode() is dispatch_mode:
            dispatch_mode.__exit__(None, None, None)
        print(report.summary(), file=sys.stderr, flush=True)

    atexit.register(print_summary_at_exit)


# -- the dispatch mode --


@dataclasses.dataclass
class _Pair:
    """A value of the sunrise call and the CPU reference's counterpart, named for messages.
    ``values=False`` compares the shape and dtype only."""

    what: str
    got: Any
    expected: Any
    values: bool = True


class _Skip(Exception):
    """Raised while preparing a call that cannot be compared; the message is the reason."""


class _CompareMode(TorchDispatchMode):
    """The TorchDispatchMode behind :func:`compare_with_cpu` and ``SUNRISE_COMPARE_CPU``."""

    def __init__(self, report: CompareReport) -> None:
        super().__init__()
        self.report = report

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: Sequence[type],
                           args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        leaves, spec = pytree.tree_flatten((args, kwargs))
        if not any(_on_sunrise(leaf) for leaf in leaves):
            return func(*args, **kwargs)
        op = _op_name(func)
        reason = _skip_reason(func, leaves)
        cpu_args: Any = None
        if reason is None:
            try:
                cpu_leaves = _cpu_copies(leaves, whole_storage=func._schema.name in _WHOLE_STORAGE)
                cpu_args, cpu_kwargs = pytree.tree_unflatten(cpu_leaves, spec)
            except Exception as e:  # noqa: BLE001 - an argument the copy does not handle
                reason = f"its arguments could not be copied to the CPU ({type(e).__name__}: {_first_line(e)})"
        try:
            out = func(*args, **kwargs)
        except BaseException as e:
            self.report._record_skip(op, f"raised {type(e).__name__} on sunrise")
            raise
        if reason is not None:
            self.report._record_skip(op, reason)
            return out
        try:
            pairs = _pairs(func, args, kwargs, out, cpu_args, cpu_kwargs)
        except _Skip as e:
            self.report._record_skip(op, str(e))
            return out
        if not pairs:
            self.report._record_skip(op, "no tensor outputs and no tensor written in place")
            return out
        self._compare(func, op, args, kwargs, pairs)
        return out

    def _compare(self, func: torch._ops.OpOverload, op: str, args: tuple, kwargs: dict,
                 pairs: list[_Pair]) -> None:
        report = self.report
        bitwise, max_abs, max_rel = True, 0.0, 0.0
        first_bad: Optional[tuple[_Pair, _Diff]] = None
        for pair in pairs:
            try:
                diff = _diff(pair, report.rtol, report.atol)
            except Exception as e:  # noqa: BLE001 - a dtype or value the comparison does not handle
                report._record_skip(op, f"comparing {pair.what} failed ({type(e).__name__}: {_first_line(e)})")
                return
            bitwise = bitwise and diff.bitwise
            max_abs, max_rel = _nan_max(max_abs, diff.max_abs), _nan_max(max_rel, diff.max_rel)
            if not diff.ok and first_bad is None:
                first_bad = (pair, diff)
        mismatch = None
        if first_bad is not None:
            mismatch = _mismatch(func, op, args, kwargs, *first_bad)
        warn = report._record_compared(op, bitwise, max_abs, max_rel, mismatch)
        if mismatch is None:
            return
        if report.on_mismatch == "raise":
            raise SunriseCompareError(mismatch)
        if warn:  # at the user's line, so that warnings filters and tools see it there
            frames = _user_frames()
            if frames:
                warnings.warn_explicit(mismatch.message, SunriseCompareWarning, frames[-1].filename,
                                       frames[-1].lineno or 0)
            else:
                warnings.warn(mismatch.message, SunriseCompareWarning, stacklevel=2)


def _op_name(func: torch._ops.OpOverload) -> str:
    """``"aten::sigmoid.default"``, ``"aten::add_.Tensor"``."""
    return f"{func._schema.name}.{func._schema.overload_name or 'default'}"


def _on_sunrise(leaf: Any) -> bool:
    if isinstance(leaf, torch.Tensor):
        return leaf.device.type == _DEVICE
    return isinstance(leaf, torch.device) and leaf.type == _DEVICE


def _skip_reason(func: torch._ops.OpOverload, leaves: list) -> Optional[str]:
    """Why a call cannot be compared before it runs, or None."""
    name = func._schema.name
    if func.namespace != "aten":
        return (f"not an ATen op ({func.namespace}): running it again on the CPU could repeat its side effects "
                "(collectives, custom ops)")
    if name in _UNINITIALIZED:
        return "its result is uninitialized memory"
    if torch.Tag.nondeterministic_seeded in func.tags and name != "aten::native_dropout":
        return "random op: sunrise's generator draws other numbers than the CPU's (not compared)"
    for leaf in leaves:
        if isinstance(leaf, _UNCOPYABLE):
            return f"an argument is a {type(leaf).__name__}, which cannot be copied to the CPU"
        if isinstance(leaf, torch.Tensor):
            if torch._C._dispatch_keys(leaf).has(torch._C.DispatchKey.Python):
                return f"an argument is a tensor subclass ({type(leaf).__name__})"
            if leaf.layout != torch.strided or leaf.is_quantized or leaf.is_nested:
                return f"an argument has layout {leaf.layout} (only strided tensors are copied)"
            if leaf.device.type not in ("cpu", _DEVICE):
                return f"an argument is on {leaf.device}"
            if leaf._is_zerotensor():
                return "an argument is a ZeroTensor"
    if _capturing():
        return "a graph capture was in progress (copying to the CPU would synchronize the stream)"
    return None


def _capturing() -> bool:
    sunrise = getattr(torch, _DEVICE, None)
    is_capturing = getattr(sunrise, "is_current_stream_capturing", None)
    return bool(is_capturing()) if is_capturing is not None else False


def _cpu_copies(leaves: list, whole_storage: bool) -> list:
    """The leaves with every tensor replaced by a CPU copy and every sunrise device by the CPU.

    The copies are taken per storage, over the byte range all the tensors of the call reach in
    it (aligned down to 16 bytes, the largest element size), so views of one storage stay views
    of one CPU storage with the same strides and relative offsets; ``whole_storage`` copies the
    whole storage (ops that address it by offset). CPU tensors are copied too: the op may write
    to them."""
    spans: dict[int, list[Any]] = {}  # StorageImpl address -> [low byte, high byte, tensor]
    for t in leaves:
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            storage = t.untyped_storage()
            size = t.element_size()
            low = t.storage_offset() * size
            high = (t.storage_offset() + sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1) * size
            if whole_storage:
                low, high = 0, max(high, storage.nbytes())
            span = spans.setdefault(storage._cdata, [low, high, t])
            span[0], span[1] = min(span[0], low), max(span[1], high)
    copies: dict[int, tuple[int, torch.UntypedStorage]] = {}
    for key, (low, high, t) in spans.items():
        low -= low % 16
        raw = torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage(), low, (high - low,), (1,))
        copies[key] = (low, raw.to("cpu", copy=True).untyped_storage())

    def copy(leaf: Any) -> Any:
        if isinstance(leaf, torch.device):
            return torch.device("cpu") if leaf.type == _DEVICE else leaf
        if not isinstance(leaf, torch.Tensor):
            return leaf
        if leaf.numel() == 0:
            result = torch.empty_strided(leaf.shape, leaf.stride(), dtype=leaf.dtype, device="cpu")
        else:
            low, storage = copies[leaf.untyped_storage()._cdata]
            offset = (leaf.storage_offset() * leaf.element_size() - low) // leaf.element_size()
            result = torch.empty(0, dtype=leaf.dtype).set_(storage, offset, leaf.shape, leaf.stride())
        if leaf.is_conj():
            result = result.conj()
        if leaf.is_neg():
            result = result._neg_view()
        return result

    return [copy(leaf) for leaf in leaves]


def _schema_values(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> list[tuple[Any, Any]]:
    """``[(schema argument, value)]`` for the arguments the call passed."""
    values = []
    for i, argument in enumerate(func._schema.arguments):
        if not argument.kwarg_only and i < len(args):
            values.append((argument, args[i]))
        elif argument.name in kwargs:
            values.append((argument, kwargs[argument.name]))
    return values


def _pairs(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any,
           cpu_args: tuple, cpu_kwargs: dict) -> list[_Pair]:
    """Runs the CPU reference and pairs what to compare: the arguments written in place, then
    the outputs that are not one of them."""
    name = func._schema.name
    train = args[2] if len(args) > 2 else kwargs.get("train")
    if name == "aten::native_dropout" and train is not False:
        # Random, but the mask is sunrise's own draw: the output must be the CPU's
        # input.mul(mask).mul_(scale) (ATen's native_dropout_cpu, mul_ with a C++ double).
        x, p = cpu_args[0], cpu_args[1] if len(cpu_args) > 1 else cpu_kwargs["p"]
        mask = out[1].cpu()
        keep = 1.0 - p
        scale = 0.0 if keep == 0 else 1.0 / keep
        expected = torch.ops.aten.mul_.Scalar(torch.ops.aten.mul.Tensor(x, mask), scale)
        return [_Pair("output 0 (through sunrise's mask)", out[0], expected),
                _Pair("output 1 (mask)", out[1], torch.empty(x.shape, dtype=torch.bool), values=False)]
    try:
        ref = func(*cpu_args, **cpu_kwargs)
    except NotImplementedError as e:
        raise _Skip(f"no CPU kernel (NotImplementedError: {_first_line(e, 80)})") from None
    except Exception as e:  # noqa: BLE001 - the CPU refuses what sunrise accepted
        raise _Skip(f"the CPU raised {type(e).__name__}: {_first_line(e)}") from None
    pairs: list[_Pair] = []
    written: set[int] = set()
    for (argument, got), (_, expected) in zip(_schema_values(func, args, kwargs),
                                              _schema_values(func, cpu_args, cpu_kwargs)):
        if argument.alias_info is None or not argument.alias_info.is_write:
            continue
        what = f"argument '{argument.name}' (written in place)"
        if isinstance(got, torch.Tensor):
            pairs.append(_Pair(what, got, expected))
            written.add(id(got))
        elif isinstance(got, (list, tuple)):
            for i, (g, e) in enumerate(zip(got, expected)):
                if isinstance(g, torch.Tensor):
                    pairs.append(_Pair(f"{what}[{i}]", g, e))
                    written.add(id(g))
    got_leaves, got_spec = pytree.tree_flatten(out)
    expected_leaves, expected_spec = pytree.tree_flatten(ref)
    if got_spec != expected_spec:  # reported as a mismatch of the descriptions
        return pairs + [_Pair("output structure", _describe(out), _describe(ref))]
    returns = func._schema.returns
    for i, (g, e) in enumerate(zip(got_leaves, expected_leaves)):
        if isinstance(g, torch.Tensor) and id(g) in written:
            continue
        if g is None and e is None:
            continue
        label = f"output {i}"
        if len(returns) == len(got_leaves) and returns[i].name:
            label += f" ({returns[i].name})"
        pairs.append(_Pair(label, g, e))
    return pairs


# -- comparing values --


@dataclasses.dataclass
class _Diff:
    """How one pair compares. ``detail``: the lines of the mismatch message."""

    ok: bool
    bitwise: bool
    max_abs: float = 0.0
    max_rel: float = 0.0
    detail: tuple[str, ...] = ()


def _diff(pair: _Pair, rtol: Optional[float], atol: Optional[float]) -> _Diff:
    got, expected = pair.got, pair.expected
    if isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor):
        return _diff_tensors(got, expected, rtol, atol, pair.values)
    if isinstance(got, torch.Tensor) or isinstance(expected, torch.Tensor) or type(got) is not type(expected):
        return _Diff(False, False, math.nan, math.nan,
                     (f"sunrise returned {_describe(got)}, the CPU {_describe(expected)}",))
    if isinstance(got, float) and math.isnan(got) and math.isnan(expected):
        return _Diff(True, True)
    if got == expected:
        return _Diff(True, True)
    detail = f"sunrise returned {got!r}, the CPU {expected!r}"
    if isinstance(got, (int, float, complex)) and not isinstance(got, bool):
        abs_diff = abs(got - expected)
        rel_diff = abs_diff / abs(expected) if expected else math.inf
        return _Diff(False, False, _nan_to_inf(abs_diff), _nan_to_inf(rel_diff), (detail,))
    return _Diff(False, False, math.nan, math.nan, (detail,))


def _diff_tensors(got: torch.Tensor, expected: torch.Tensor, rtol: Optional[float],
                  atol: Optional[float], values: bool) -> _Diff:
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return _Diff(False, False, math.nan, math.nan,
                     (f"sunrise: {_describe(got)}, CPU: {_describe(expected)}",))
    if not values or got.numel() == 0:
        return _Diff(True, True)
    g = got.detach().to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1)
    e = expected.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
    n = g.numel()
    same_bits = (g.view(torch.uint8).view(n, -1) == e.view(torch.uint8).view(n, -1)).all(1)
    wide = torch.complex128 if g.is_complex() else torch.float64
    gw, ew = g.to(wide), e.to(wide)
    both_nan = torch.isnan(gw) & torch.isnan(ew)
    same = same_bits | both_nan
    bitwise = bool(same.all())
    equal = (gw == ew) | both_nan
    diff = torch.where(equal, 0.0, (gw - ew).abs())
    diff = torch.where(torch.isnan(diff), math.inf, diff)  # NaN against a number, inf against -inf
    magnitude = ew.abs()
    rel = torch.where(diff == 0, 0.0, diff / magnitude)
    rel = torch.where(torch.isnan(rel), math.inf, rel)  # inf against -inf
    if g.is_floating_point() or g.is_complex():
        if rtol is None or atol is None:
            rtol, atol = _DEFAULT_TOLERANCES.get(g.dtype, (0.0, 0.0))
        if rtol == 0 and atol == 0:
            bad = ~same
        else:
            close = torch.isfinite(gw) & torch.isfinite(ew) & (diff <= atol + rtol * magnitude)
            bad = ~(equal | close)
        tolerance = "bitwise" if rtol == 0 and atol == 0 else f"rtol={rtol:g}, atol={atol:g}"
    else:
        bad = ~same_bits
        tolerance = "exact (integer or bool)"
    max_abs, max_rel = float(diff.max()), float(rel.max())
    n_bad = int(bad.sum())
    if n_bad == 0:
        return _Diff(True, bitwise, max_abs, max_rel)
    worst = int(torch.where(bad, diff, -1.0).argmax())
    worst_rel = int(torch.where(bad, rel, -1.0).argmax())
    shape = tuple(got.shape)
    detail = [
        f"{n_bad} of {n} elements differ beyond the tolerance ({tolerance})",
        f"max abs diff {_fmt(max_abs)}; worst element at index {_unravel(worst, shape)}: "
        f"sunrise {_item(g, worst)}, CPU {_item(e, worst)}",
        f"max rel diff {_fmt(max_rel)}; worst at index {_unravel(worst_rel, shape)}: "
        f"sunrise {_item(g, worst_rel)}, CPU {_item(e, worst_rel)}",
    ]
    if float(diff[worst]) == 0:
        detail.append("the values are equal but their bits differ (-0.0 against 0.0)")
    return _Diff(False, bitwise, max_abs, max_rel, tuple(detail))


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def _item(t: torch.Tensor, i: int) -> str:
    value = t[i].item()
    return f"{value:.8g}" if isinstance(value, float) else repr(value)


def _fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def _nan_max(a: float, b: float) -> float:
    """max() that lets NaN (a shape or dtype mismatch) through."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _nan_to_inf(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, at most ``limit`` characters."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


# -- the mismatch message --


def _mismatch(func: torch._ops.OpOverload, op: str, args: tuple, kwargs: dict, pair: _Pair,
              diff: _Diff) -> Mismatch:
    lines = [f"{op}: sunrise differs from the CPU in {pair.what}"]
    lines += [f"  {line}" for line in diff.detail]
    arguments = ", ".join(f"{argument.name}={_describe(value)}" for argument, value in _schema_values(func, args, kwargs))
    lines.append(f"  arguments: {arguments}")
    node = torch._C._current_autograd_node()
    frames = _user_frames()
    header = "called from"
    call_site = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    if node is not None:
        lines.append(f"  in the backward of {node.name()}")
        forward = _forward_trace(node)
        if forward:
            lines.append("  whose forward op was called from (most recent call last):")
            lines += forward
        else:
            lines.append("  (run the forward under torch.autograd.detect_anomaly() to see where it was called)")
        if not frames:  # on an autograd thread: show where backward() was called
            frames, header, call_site = _backward_caller_frames(), "backward() called from", node.name()
    if frames:
        lines.append(f"  {header} (most recent call last):")
        if len(frames) > _MAX_FRAMES:
            lines.append(f"    ... {len(frames) - _MAX_FRAMES} outer frames")
            frames = frames[-_MAX_FRAMES:]
        for f in frames:
            lines.append(f'    File "{f.filename}", line {f.lineno}, in {f.name}')
            if f.line:
                lines.append(f"      {f.line.strip()}")
    else:
        lines.append(f"  {header}: no Python frame outside torch and torch_sunrise")
    return Mismatch(op, pair.what, diff.max_abs, diff.max_rel, call_site, "\n".join(lines))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)} ({value.device})"
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        items = ", ".join(_describe(v) for v in value[:4])
        return f"[{items}{', ...' if len(value) > 4 else ''}] ({len(value)} items)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_user_file(filename: str) -> bool:
    path = os.path.abspath(filename)
    return not (path.startswith(_TORCH_DIR) or path.startswith(_PACKAGE_DIR))


def _user_frames(stack: Optional[traceback.StackSummary] = None) -> list[traceback.FrameSummary]:
    """The frames of the current stack (or ``stack``) outside torch/ and torch_sunrise/,
    outermost first."""
    if stack is None:
        stack = traceback.extract_stack()
    return [f for f in stack if _is_user_file(f.filename)]


def _backward_caller_frames() -> list[traceback.FrameSummary]:
    """A backward op runs on an autograd thread; the user's frames are in the thread waiting in
    ``backward()`` (the one inside torch.autograd's engine call)."""
    for frame in sys._current_frames().values():
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "_engine_run_backward":
                return _user_frames(traceback.extract_stack(frame))
            f = f.f_back
    return []


def _forward_trace(node: Any) -> list[str]:
    """The user's frames of the forward call that built ``node``, as message lines; anomaly mode
    (``torch.autograd.detect_anomaly()``) records them."""
    trace = getattr(node, "metadata", {}).get("traceback_")
    if not trace:
        return []
    lines = []
    for entry in trace:  # traceback.format_stack() entries: '  File "f.py", line 3, in g\n    code\n'
        entry_lines = [line.strip() for line in entry.strip().splitlines()]
        if not entry_lines or ('"' in entry_lines[0] and not _is_user_file(entry_lines[0].split('"')[1])):
            continue
        lines.append(f"    {entry_lines[0]}")
        lines += [f"      {line}" for line in entry_lines[1:]]
    return lines[-2 * _MAX_FRAMES:]
