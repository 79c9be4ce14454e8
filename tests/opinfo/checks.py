"""The OpInfo harness: PyTorch's OpInfos run on sunrise and on the CPU, and compared.

The one implementation behind both users:

* tests/test_opinfo_device.py (and full_run.py, which runs it in chunks): ``run_check`` runs one
  of the six checks of one (OpInfo, dtype) as a test;
* the agreement sweep (sweep.py, tests/test_opinfo_sweep.py): ``agreement`` runs the forward check
  over an OpInfo's first samples and returns a record (agree / mismatch / error / skip) instead of
  failing.

Every check generates the OpInfo's samples on the sunrise device (``op.sample_inputs(device,
dtype)``, with a fixed seed), copies each sample to the CPU *exactly* (same strides, storage
offsets, storage sharing between arguments, conj/neg bits, views and autograd views of leaves),
runs the op on both and compares. On sunrise the op runs on a copy of the sample made the same way
(so both sides have the same layouts and autograd structure), by device work still queued when the
op is called: the op must respect stream order. Tensors that ``sample_inputs`` puts on the CPU
whatever the device (e.g. the indices of ``tensor_split``) stay there, as on CUDA.

  forward        every sample: results (values, dtypes, shapes), the device of the results,
                 which results alias which inputs (views stay views), and the sample tensors
                 afterwards (ops that mutate their inputs)
  noncontiguous  the same on ``sample.noncontiguous()``
  out            ``out=`` (TestCommon.test_out's cases): out tensors full of extremal values,
                 strided, empty and of a wrong shape (resized, with CPU's warnings), on the CPU
                 (RuntimeError at the call), of an unsafe dtype (CPU's error); strides, memory
                 kept and identity of the returned tensors as on the CPU
  inplace        the in-place variant (``op.inplace_variant``): result, mutated input, identity
  variants       the method, operator, alias and in-place variants against CPU's same variants,
                 result and gradient (TestCommon.test_variant_consistency_eager's variants)
  grad           gradients of every output with respect to every sample tensor that requires
                 grad, with the same random output gradients on both sides

A sample for which the CPU raises must raise on sunrise too, at the call (not when the device
synchronizes), and an exception of the same class. Results of random ops (``is_random``)
and of samples that run a seeded random ATen op (e.g. dropout with p > 0: sunrise has its own
generator, as CUDA does) are compared on shape and dtype only. Tolerances: the OpInfo's
toleranceOverride for the dtype where it has one, else assert_close's defaults (exact for integers
and bool). PyTorch's own decorators of the OpInfos are stripped (``stripped``): the only expected
failures are those of tests/opinfo/expected_failures.py.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import signal
import time
import traceback
import unittest
import warnings
import zlib
from typing import Any, Callable, Iterable

import torch
from torch.testing._internal.common_utils import clear_tracked_input

from tests.opinfo import common
from tests.opinfo.common import DEVICE_TYPE, exc_line, injected, one_line

RECORD_ENV = "SUNRISE_OPINFO_RECORD"  # JSONL file that receives one record per test (full_run.py)
INJECT_ENV = common.INJECT_ENV

QUICK_OPS = common.QUICK_OPS
QUICK_DTYPES = tuple(getattr(torch, name) for name in common.QUICK_DTYPES)
QUICK_GRAD_DTYPES = tuple(getattr(torch, name) for name in common.QUICK_GRAD_DTYPES)
VARIANT_DTYPES = tuple(getattr(torch, name) for name in common.VARIANT_DTYPES)

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


# --------------------------------------------------------------------------- OpInfos


def op_key(op) -> str:
    """The OpInfo's full name: ``name`` or ``name.variant``."""
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def select_ops(op_db: Iterable, full: bool, names: str | None) -> list:
    """The OpInfos to instantiate: ``names`` (comma-separated full names) if given, else all of
    op_db when ``full``, else QUICK_OPS."""
    ops = list(op_db)
    if names:
        wanted = {n.strip() for n in names.split(",") if n.strip()}
    elif full:
        wanted = None
    else:
        wanted = set(QUICK_OPS)
    if wanted is not None:
        known = {op_key(op) for op in ops}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"no OpInfo named {unknown} in op_db")
        ops = [op for op in ops if op_key(op) in wanted]
    return ops


def stripped(op):
    """A shallow copy of the OpInfo without its decorators. They belong to PyTorch's own test
    classes (skips for CPU builds without LAPACK, @slowTest, @onlyCUDA, @onlyNativeDeviceTypes,
    TF32 switches); none applies to these tests, whose only skips and expected failures are in
    tests/opinfo/expected_failures.py. Tolerance overrides are read from the original."""
    clone = copy.copy(op)
    clone.decorators = ()
    clone._sunrise_original = op
    return clone


def original(op):
    return getattr(op, "_sunrise_original", op)


def is_random(key: str) -> bool:
    """Whether the OpInfo's values are random (or uninitialized): compared on metadata only."""
    if key in NOT_RANDOM:
        return False
    if key in RANDOM_OPS:
        return True
    tokens = set(re.split(r"[._]+", key))
    return bool(tokens & RANDOM_TOKENS)


def stable_seed(key: str, dtype: str) -> int:
    return zlib.crc32(f"{key}/{dtype}".encode()) & 0x7FFFFFFF


def tolerances(op, dtype) -> tuple[float, float] | None:
    """(rtol, atol) from the OpInfo's toleranceOverride decorators for dtype, at least the
    defaults of assert_close; None if the OpInfo has no override for dtype."""
    from torch.testing._comparison import default_tolerances
    from torch.testing._internal.common_device_type import toleranceOverride

    best = None
    for info in getattr(original(op), "decorators", ()) or ():
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


def describe_arg(obj: Any, depth: int = 0) -> str:
    """A compact description of a sample argument, enough to rebuild a repro."""
    if isinstance(obj, torch.Tensor):
        s = f"T{list(obj.shape)}:{dtype_name(obj.dtype)}"
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
        inner = ", ".join(describe_arg(x, depth + 1) for x in obj[:8])
        if len(obj) > 8:
            inner += f", ...({len(obj)})"
        return ("[" + inner + "]") if isinstance(obj, list) else ("(" + inner + ("," if len(obj) == 1 else "") + ")")
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k}={describe_arg(v, depth + 1)}" for k, v in obj.items()) + "}"
    if callable(obj) and hasattr(obj, "__name__"):
        return obj.__name__
    return repr(obj)


# --------------------------------------------------------------------------- copying samples


def map_tree(obj: Any, fn: Callable[[Any], Any]) -> Any:
    """fn applied to every leaf of a structure of lists, tuples (namedtuples, torch.Size) and
    dicts; leaves are anything else."""
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_tree(x, fn) for x in obj))
    if isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tree(x, fn) for x in obj)
    if isinstance(obj, dict):
        return {k: map_tree(v, fn) for k, v in obj.items()}
    return fn(obj)


def tensors_in(obj: Any) -> list:
    out: list = []
    map_tree(obj, lambda x: out.append(x) if isinstance(x, torch.Tensor) else None)
    return out


def is_device_ref(x: Any) -> bool:
    if isinstance(x, torch.device):
        return x.type == DEVICE_TYPE
    return isinstance(x, str) and (x == DEVICE_TYPE or x.startswith(DEVICE_TYPE + ":"))


class ExactCopy:
    """Copies a sample (or any structure) to another device exactly: every storage once, each
    tensor rebuilt on the copy with its size, strides and storage offset, so views, expanded
    tensors and arguments sharing memory keep doing so. A tensor object that appears twice is
    copied once. A non-leaf tensor requiring grad that shares memory with a leaf requiring grad
    (a view of it, found among the arguments or as its ``_base``) becomes an ``as_strided`` view of
    the copied leaf, so gradients flow to the leaf alike. Device arguments naming sunrise
    are replaced by the target device when it is the CPU."""

    def __init__(self, target: str = "cpu", cpu_too: bool = True):
        self.target = torch.device(target)
        self.cpu_too = cpu_too  # False: tensors on the CPU stay there (cloned exactly)
        self.memo: dict[int, tuple] = {}
        self.storages: dict[tuple, torch.Tensor] = {}
        self.grad_leaves: dict[tuple, torch.Tensor] = {}
        self.on_device = 0  # sunrise tensors and device arguments met
        self.names_cpu = 0  # device arguments naming the CPU (results may rightly be there)

    def __call__(self, obj: Any) -> Any:
        for t in tensors_in(obj):  # leaves that views among the arguments may come from
            if t.requires_grad and t.is_leaf and t.layout == torch.strided:
                key = _storage_key(t)
                if key is not None:
                    self.grad_leaves.setdefault(key, t)
        return map_tree(obj, self.leaf)

    def leaf(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return self.tensor(x)
        if isinstance(x, torch.device) and x.type == "cpu" or isinstance(x, str) and (x == "cpu" or x.startswith("cpu:")):
            self.names_cpu += 1
        if is_device_ref(x):
            self.on_device += 1
            if self.target.type == "cpu":
                return torch.device("cpu") if isinstance(x, torch.device) else "cpu"
        return x

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        hit = self.memo.get(id(t))
        if hit is not None:
            return hit[1]
        if t.device.type == DEVICE_TYPE:
            self.on_device += 1
        copy = self._copy(t)
        self.memo[id(t)] = (t, copy)  # keeps t alive, so its id is not reused
        return copy

    def counterpart(self, t: torch.Tensor) -> torch.Tensor | None:
        hit = self.memo.get(id(t))
        return hit[1] if hit else None

    def _as_view(self, t: torch.Tensor) -> torch.Tensor | None:
        """t rebuilt as a view of the copy of the tensor it is a view of, with the same autograd
        standing: a non-leaf requiring grad stays connected to its leaf (a leaf requiring grad
        among the arguments that shares its memory, else its ``_base``); a view made without
        grad tracking (a leaf) stays one. Views with another dtype (``.real``, ``view(dtype)``) too.
    None when t is no view of a strided tensor it can be rebuilt from."""
        base, track = None, False
        if t.requires_grad and not t.is_leaf:
            base = self.grad_leaves.get(_storage_key(t))
            if base is None and t._base is not None and t._base.requires_grad:
                base = t._base
            track = base is not None
        if base is None:
            base = t._base
        if base is None or base is t or base.layout != torch.strided:
            return None
        if base.dtype != t.dtype and not (base.dtype.is_complex and base.dtype.to_real() == t.dtype) \
                and base.element_size() != t.element_size():
            return None
        cbase = self.tensor(base)
        with torch.set_grad_enabled(track):
            if cbase.dtype == t.dtype:
                pass
            elif cbase.dtype.is_complex and cbase.dtype.to_real() == t.dtype:  # .real, .imag, view_as_real
                cbase = torch.view_as_real(cbase.resolve_conj() if cbase.is_conj() else cbase)
            else:  # .view(dtype) with the same element size
                cbase = cbase.view(t.dtype)
            view = cbase.as_strided(t.shape, t.stride(), t.storage_offset())
            if t.is_conj() != view.is_conj():
                view = view.conj()
            if t.is_neg() != view.is_neg():
                view = torch._neg_view(view)
        if view.is_leaf and view.requires_grad != t.requires_grad:
            view.requires_grad_(t.requires_grad)
        return view

    def _copy(self, t: torch.Tensor) -> torch.Tensor:
        target = self.target if (self.cpu_too or t.device.type != "cpu") else torch.device("cpu")
        if t.layout != torch.strided:
            c = t.detach().to(target)
            return c.requires_grad_(True) if t.requires_grad else c
        view = self._as_view(t)
        if view is not None:
            return view
        storage = t.untyped_storage()
        nbytes = storage.nbytes()
        key = (str(t.device), storage.data_ptr()) if nbytes else None
        buf = self.storages.get(key) if key else None
        if buf is None:
            raw = torch.empty(0, dtype=torch.uint8, device=t.device)
            if nbytes:
                raw.set_(storage)
            buf = raw.to(target, copy=True)
            if key:
                self.storages[key] = buf
        with torch.no_grad():
            c = torch.empty(0, dtype=t.dtype, device=target)
            c.set_(buf.untyped_storage(), t.storage_offset(), t.shape, t.stride())
        if t.requires_grad:
            c.requires_grad_(True)
        if t.is_conj():
            c = c.conj()
        if t.is_neg():
            c = torch._neg_view(c)
        return c


# --------------------------------------------------------------------------- comparison


def _tol_for(t: torch.Tensor, tol) -> dict:
    if tol is not None and (t.dtype.is_floating_point or t.dtype.is_complex):
        return {"rtol": tol[0], "atol": tol[1]}
    return {}


def _to_cpu_exact(t: torch.Tensor) -> torch.Tensor:
    if t.device.type == "cpu":
        return t
    if t.layout != torch.strided or t._is_zerotensor():  # a ZeroTensor (autograd's zeros) has no storage
        return t.cpu()
    return ExactCopy("cpu").tensor(t.detach())


def differences(expected: Any, actual: Any, tol=None, *, metadata_only: bool = False,
                check_stride: bool = False, path: str = "result") -> list[str]:
    """Where ``actual`` (sunrise) differs from ``expected`` (CPU): a list of reasons."""
    if isinstance(expected, torch.Tensor) or isinstance(actual, torch.Tensor):
        if not (isinstance(expected, torch.Tensor) and isinstance(actual, torch.Tensor)):
            return [f"{path}: {type(actual).__name__} where CPU returns {type(expected).__name__}"]
        if expected.shape != actual.shape or expected.dtype != actual.dtype:
            return [f"{path}: {list(actual.shape)} {actual.dtype}, CPU {list(expected.shape)} {expected.dtype}"]
        if expected.layout != actual.layout:
            return [f"{path}: layout {actual.layout}, CPU {expected.layout}"]
        bad = []
        if check_stride and actual.numel() > 1 and expected.stride() != actual.stride():
            bad.append(f"{path}: strides {actual.stride()}, CPU {expected.stride()}")
        if metadata_only:
            return bad
        a = _to_cpu_exact(actual.detach())
        e = expected.detach()
        try:
            torch.testing.assert_close(a, e, equal_nan=True, check_device=False, **_tol_for(e, tol))
        except AssertionError as err:
            lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
            bad.append(f"{path}: " + " | ".join(lines[:4]))
        return bad
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(expected) != len(actual):
            return [f"{path}: {len(actual)} items, CPU {len(expected)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual))
                for d in differences(e, a, tol, metadata_only=metadata_only, check_stride=check_stride,
                                     path=f"{path}[{i}]")]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return [f"{path}: keys {sorted(actual)}, CPU {sorted(expected)}"]
        return [d for k in expected
                for d in differences(expected[k], actual[k], tol, metadata_only=metadata_only,
                                     check_stride=check_stride, path=f"{path}[{k!r}]")]
    if isinstance(actual, torch.device) and actual.type == DEVICE_TYPE:
        actual = torch.device("cpu")
    if type(expected) is not type(actual) and not (
            isinstance(expected, (int, float, complex)) and isinstance(actual, (int, float, complex))):
        return [f"{path}: {type(actual).__name__} {actual!r}, CPU {type(expected).__name__} {expected!r}"]
    if isinstance(expected, (float, complex)) and not metadata_only:
        try:
            torch.testing.assert_close(actual, expected, equal_nan=True,
                                       **({"rtol": tol[0], "atol": tol[1]} if tol else {}))
            return []
        except AssertionError as err:
            return [f"{path}: {actual!r}, CPU {expected!r} ({one_line(err, 120)})"]
    if metadata_only:
        return []
    try:
        same = expected == actual
        same = bool(same)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        same = repr(expected) == repr(actual)
    return [] if same else [f"{path}: {actual!r}, CPU {expected!r}"]


def device_problems(result: Any, path: str = "result") -> list[str]:
    return [f"{path}: a result tensor is on {t.device}, expected {DEVICE_TYPE}"
            for t in tensors_in(result) if t.device.type != DEVICE_TYPE][:1]


def _storage_key(t: torch.Tensor):
    if t.layout != torch.strided:
        return None
    try:
        s = t.untyped_storage()
    except Exception:  # noqa: BLE001
        return None
    return (s.device.type, s.data_ptr()) if s.nbytes() else None


def aliasing(result: Any, inputs: list) -> list[tuple]:
    """For each result tensor: the indices of the sample tensors it shares memory with."""
    keys = [_storage_key(t) for t in inputs]
    out = []
    for t in tensors_in(result):
        k = _storage_key(t)
        out.append(tuple(i for i, ik in enumerate(keys) if k is not None and ik == k))
    return out


def seeded_op_detector():
    """A dispatch mode that records the first ATen op tagged nondeterministic_seeded (bernoulli,
    native_dropout, rand, ...) run under it: such a sample is random even when the OpInfo fixes
    the seed (wrapper_set_seed), because sunrise has its own generator, as CUDA does."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Detector(TorchDispatchMode):
        hit = None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if self.hit is None and torch.Tag.nondeterministic_seeded in func.tags:
                self.hit = func.name()
            return func(*args, **(kwargs or {}))

    return Detector()


def perturbed(obj: Any) -> Any:
    """A wrong result (fault injection "wrong"): tensors + 1, bool tensors negated."""
    if isinstance(obj, torch.Tensor):
        return torch.logical_not(obj) if obj.dtype == torch.bool else obj + 1
    if isinstance(obj, (list, tuple)):
        return type(obj)(perturbed(x) for x in obj)
    return obj


# --------------------------------------------------------------------------- the checks


class Disagreement(AssertionError):
    """Sunrise disagrees with the CPU on a sample. ``outcome`` is the sweep's name for it: "error"
    (sunrise raised where the CPU did not) or "mismatch" (anything else)."""

    def __init__(self, message: str, outcome: str = "mismatch", device_exc: BaseException | None = None):
        super().__init__(message)
        self.outcome = outcome
        self.device_exc = device_exc  # what sunrise raised, for an "error"


class Checker:
    """Runs one check (kind) of one (op, dtype) on sunrise and CPU; a disagreement raises
    ``Disagreement``. Collects what it saw in ``self.info`` (written to the record file for the
    coverage report). ``limit``: only the first samples. ``progress(**fields)`` is told the sample
    (``sample=[index, description]``) and the phase about to run (the sweep's worker reports them,
    so that a crash names its sample)."""

    def __init__(self, device: str, dtype, op, kind: str, *, limit: int | None = None,
                 progress: Callable[..., None] | None = None):
        self.device, self.dtype, self.kind = device, dtype, kind
        self.limit = limit
        self.progress = progress or (lambda **_: None)
        self.op = op
        self.orig = original(op)
        self.key = op_key(op)
        self.dtype_name = dtype_name(dtype)
        self.tol = tolerances(op, dtype)
        self.random_op = is_random(self.key)
        self.seed = stable_seed(self.key, self.dtype_name)
        self.fallback: dict[str, int] = {}  # synchronous fallback calls per ATen op
        self.queued: dict[str, int] = {}  # fallback calls queued as device work
        self.sync_reasons: dict[str, str] = {}  # why the synchronous ones could not be queued
        self.info: dict[str, Any] = {"kind": kind, "op": self.key, "dtype": self.dtype_name, "samples": 0,
                                     "cpu_raised": 0, "random_samples": 0, "compared": 0}
        self.perturb = injected(self.key, kind, self.dtype_name) == "wrong"
        self.desc = ""
        self.current = -1  # the sample being checked
        self.device_drew_random = False
        self.raised_async = False  # the last device run raised at synchronization, not at the call

    # -- helpers
    def samples(self, requires_grad: bool = False) -> list:
        """The OpInfo's samples, generated on sunrise. If that raises, the samples are generated
        on the CPU: the test skips (with the reason) when the CPU fails too, and fails otherwise."""
        torch.manual_seed(self.seed)
        try:
            return list(itertools.islice(self.op.sample_inputs(self.device, self.dtype, requires_grad=requires_grad),
                                         self.limit))
        except Exception as e:  # noqa: BLE001
            dev_exc = e
        finally:
            clear_tracked_input()  # PyTorch's "Caused by sample input" note: our messages name the sample
        torch.manual_seed(self.seed)
        try:
            list(itertools.islice(self.op.sample_inputs("cpu", self.dtype, requires_grad=requires_grad), self.limit))
        except Exception as e:  # noqa: BLE001
            raise unittest.SkipTest(f"the OpInfo cannot generate samples on CPU either: {exc_line(e)}")
        self.info["reason"] = "sample generation on sunrise raised " + exc_line(dev_exc)
        raise Disagreement(f"sample_inputs raised on {DEVICE_TYPE} (not on CPU): {exc_line(dev_exc)}",
                           "error") from dev_exc

    def run_device(self, fn: Callable[[], Any]) -> Any:
        import torch_sunrise

        torch_sunrise.reset_fallback_stats()
        torch.manual_seed(self.seed)
        before = torch.sunrise.get_rng_state()
        self.device_drew_random = False
        self.raised_async = False
        try:
            result = fn()
            try:
                torch.sunrise.synchronize()
            except Exception:
                self.raised_async = True  # the call returned; its device work failed
                raise
            self.device_drew_random = not torch.equal(before, torch.sunrise.get_rng_state())
            return perturbed(result) if self.perturb else result
        finally:
            for name, calls in torch_sunrise.fallback_stats().items():
                self.fallback[name] = self.fallback.get(name, 0) + calls
            for name, calls in torch_sunrise.queued_fallback_stats().items():
                self.queued[name] = self.queued.get(name, 0) + calls
            self.sync_reasons.update(torch_sunrise.fallback_reasons())

    def run_cpu(self, fn: Callable[[], Any], probe: Callable[[], Any] | None = None) -> tuple[Any, bool]:
        """(result, random). random: the run drew from the CPU generator, or ``probe`` (the same
        call on another copy of the sample, run first) ran an ATen op tagged
        nondeterministic_seeded (dropout with p > 0, ...; the generator state alone does not tell
        when the OpInfo wraps the op in freeze_rng_state). The reference itself runs without a
        dispatch mode: some CPU ops compute differently under one (complex pinverse does)."""
        random = False
        if probe is not None and not self.random_op:
            detector = seeded_op_detector()
            torch.manual_seed(self.seed)
            try:
                with detector:
                    probe()
            except Exception:  # noqa: BLE001 - the reference run below reports errors
                pass
            random = detector.hit is not None
            if random:
                self.info["random_op"] = detector.hit
        torch.manual_seed(self.seed)
        before = torch.random.get_rng_state()
        result = fn()
        return result, random or not torch.equal(before, torch.random.get_rng_state())

    @staticmethod
    def probe_of(fn: Callable, tree: tuple) -> Callable[[], Any]:
        """fn(input, *args, **kwargs) on a fresh CPU copy of tree (made when the probe runs)."""
        def probe():
            p_in, p_args, p_kwargs = ExactCopy("cpu")(tree)
            return fn(p_in, *p_args, **p_kwargs)

        return probe

    def describe(self, cpu_copy) -> None:
        """Remembers the sample's description (from its CPU copy, before any op ran on it)."""
        c_in, c_args, c_kwargs = cpu_copy
        try:
            parts = [describe_arg(c_in)] + [describe_arg(a) for a in c_args]
            parts += [f"{k}={describe_arg(v)}" for k, v in c_kwargs.items()]
            self.desc = one_line(", ".join(parts), 400)
        except Exception as e:  # noqa: BLE001
            self.desc = f"(not describable: {exc_line(e)})"

    def fail(self, i: int, sample, what: str, outcome: str = "mismatch", device_exc=None) -> None:
        self.info["failed_sample"] = i
        self.info["sample"] = self.desc
        msg = f"{self.kind} {self.key} [{self.dtype_name}] sample {i}: {what}\n  sample (device arguments " \
              f"shown as cpu): {self.desc}"
        self.info["reason"] = one_line(what, 400)
        raise Disagreement(msg, outcome, device_exc)

    def both(self, i: int, sample, cpu_fn, dev_fn, probe=None):
        """Runs cpu_fn then dev_fn. Returns (expected, actual, random) or None when both raised;
        fails the test when only one raised."""
        self.progress(phase="CPU run")
        try:
            expected, rnd = self.run_cpu(cpu_fn, probe)
            cpu_exc = None
        except Exception as e:  # noqa: BLE001
            expected, rnd, cpu_exc = None, False, e
        self.progress(phase="sunrise run")
        try:
            actual = self.run_device(dev_fn)
            dev_exc = None
        except Exception as e:  # noqa: BLE001
            actual, dev_exc = None, e
        if cpu_exc is not None:
            self.info["cpu_raised"] += 1
            if dev_exc is None:
                self.fail(i, sample, f"CPU raised {exc_line(cpu_exc)} but {DEVICE_TYPE} did not")
            if self.raised_async:
                self.fail(i, sample, f"{DEVICE_TYPE} raised {exc_line(dev_exc)} only when synchronizing; "
                                     f"CPU raises at the call: {exc_line(cpu_exc)}", "error", dev_exc)
            if type(dev_exc) is not type(cpu_exc):
                self.fail(i, sample, f"{DEVICE_TYPE} raised {exc_line(dev_exc)}, CPU {exc_line(cpu_exc)}",
                          "error", dev_exc)
            return None
        if dev_exc is not None:
            self.fail(i, sample, f"{DEVICE_TYPE} raised {exc_line(dev_exc)} (CPU did not)", "error", dev_exc)
        self.progress(phase="comparison")
        rnd = rnd or self.random_op or self.device_drew_random
        if rnd:
            self.info["random_samples"] += 1
        return expected, actual, rnd

    def check(self, i: int, sample, problems: list[str]) -> None:
        if problems:
            self.fail(i, sample, "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))

    def prepare(self, i: int, sample) -> tuple:
        """(CPU copy, device copy, CPU copier) of sample ``i``. The device copy is made by device
        work that is still queued when the op runs (no synchronization in between): the op must
        order itself after the work producing its inputs, as on a GPU stream."""
        self.current = i
        copier = ExactCopy("cpu")
        cpu = copier((sample.input, sample.args, sample.kwargs))
        self.describe(cpu)
        self.progress(sample=[i, self.desc], phase="copying the sample")
        dev = ExactCopy(self.device, cpu_too=False)((sample.input, sample.args, sample.kwargs))
        return cpu, dev, copier

    def run_sample(self, i: int, sample, fn):
        """Runs ``fn`` on CPU and device copies of one sample: (CPU args, device args, copier, both's result)."""
        self.info["samples"] += 1
        (c_in, c_args, c_kwargs), (d_in, d_args, d_kwargs), copier = self.prepare(i, sample)
        got = self.both(i, sample, lambda: fn(c_in, *c_args, **c_kwargs), lambda: fn(d_in, *d_args, **d_kwargs),
                        self.probe_of(fn, (c_in, c_args, c_kwargs)))
        if got is not None:
            self.info["compared"] += 1
        return (c_in, c_args, c_kwargs), (d_in, d_args, d_kwargs), copier, got

    # -- the checks
    def forward(self, noncontiguous: bool = False) -> None:
        samples = self.samples()
        if noncontiguous:
            samples = [s.noncontiguous() for s in samples]
        for i, sample in enumerate(samples):
            (c_in, c_args, c_kwargs), (d_in, d_args, d_kwargs), copier, got = self.run_sample(i, sample, self.op)
            if got is None:
                continue
            expected, actual, rnd = got
            problems = device_problems(actual) if copier.on_device and not copier.names_cpu else []
            diffs = differences(expected, actual, self.tol, metadata_only=rnd)
            if diffs and not rnd:
                # Non-unique results (e.g. SVD signs): compare what the OpInfo says to compare.
                try:
                    if not differences(sample.output_process_fn_grad(expected),
                                       sample.output_process_fn_grad(actual), self.tol):
                        diffs = []
                        self.info["processed_compare"] = self.info.get("processed_compare", 0) + 1
                except Exception:  # noqa: BLE001
                    pass
            problems += diffs
            if not rnd:
                dev_inputs = tensors_in((d_in, d_args, d_kwargs))
                cpu_inputs = tensors_in((c_in, c_args, c_kwargs))
                a_dev, a_cpu = aliasing(actual, dev_inputs), aliasing(expected, cpu_inputs)
                if a_dev != a_cpu:
                    problems.append(f"aliasing of results with the sample tensors: {a_dev}, CPU {a_cpu}")
                problems += ["after the op, " + d for d in differences(cpu_inputs, dev_inputs, self.tol,
                                                                    path="sample tensors")]
            self.check(i, sample, problems)

    def out(self) -> None:
        """TestCommon.test_out's cases on every sample, CPU's behaviour the reference: out tensors
        full of extremal values, strided, empty and of a wrong shape (resized, with CPU's resize
        warnings); on the CPU (the call raises RuntimeError, as on CUDA); of dtype long for a
        floating or complex result (raises what the CPU raises). Only resize warnings are
        compared: a warning shown once per process shows on whichever device runs first."""
        fn = self.op
        for i, sample in enumerate(self.samples()):
            self.info["samples"] += 1
            copier = ExactCopy("cpu")
            c_in, c_args, c_kwargs = copier((sample.input, sample.args, sample.kwargs))
            self.describe((c_in, c_args, c_kwargs))
            try:
                torch.manual_seed(self.seed)
                functional = fn(c_in, *c_args, **c_kwargs)
            except Exception:  # noqa: BLE001 - no result to shape the out tensors: nothing to test
                self.info["cpu_raised"] += 1
                continue
            results = list(functional) if isinstance(functional, (tuple, list)) else [functional]
            if not results or not all(isinstance(t, torch.Tensor) and t.layout == torch.strided for t in results):
                continue
            for variant in OUT_VARIANTS:
                if variant == "unsafe dtype" and not any(t.dtype.is_floating_point or t.dtype.is_complex
                                                          for t in results):
                    continue  # bool and integer results cast safely to long
                if variant == "wrong device" and (fn.is_factory_function and "device" not in sample.kwargs
                                                  or self.key in OUT_COPIED_IN_PYTHON):
                    continue  # a factory without device= makes its result where out= is; see OUT_COPIED_IN_PYTHON
                self.out_variant(i, sample, fn, functional, results, variant)

    def out_variant(self, i: int, sample, fn, functional, results: list, variant: str) -> None:
        outs_cpu = [make_out(t, variant) for t in results]
        if variant == "wrong device":
            outs_dev = [ExactCopy("cpu").tensor(t) for t in outs_cpu]
        else:
            outs_dev = [ExactCopy(self.device).tensor(t) for t in outs_cpu]

        def packed(outs):
            return outs[0] if isinstance(functional, torch.Tensor) else tuple(outs)

        warned = {"cpu": [], "device": []}

        def call(side, args, outs):
            c_in, c_args, c_kwargs = args
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    return fn(c_in, *c_args, out=packed(outs), **c_kwargs)
                finally:
                    warned[side] = sorted({str(w.message).split(" (Triggered internally")[0] for w in caught
                                           if "resized" in str(w.message)})

        ptrs = {"cpu": [t.data_ptr() for t in outs_cpu], "device": [t.data_ptr() for t in outs_dev]}
        cpu_args, dev_args, _ = self.prepare(i, sample)
        if variant == "wrong device":
            self.wrong_device_out(i, sample, lambda: call("cpu", cpu_args, outs_cpu),
                                  lambda: call("device", dev_args, outs_dev))
            return
        got = self.both(i, sample, lambda: call("cpu", cpu_args, outs_cpu), lambda: call("device", dev_args, outs_dev),
                        self.probe_of(fn, cpu_args))
        if got is None:
            return
        expected, actual, rnd = got
        self.info["compared"] += 1
        problems = device_problems(outs_dev, "out")
        problems += differences(expected, actual, self.tol, metadata_only=rnd, path="returned")
        problems += differences(outs_cpu, outs_dev, self.tol, metadata_only=rnd, check_stride=True, path="out")
        kept = {side: [t.data_ptr() == p for t, p in zip(outs, ptrs[side])]
                for side, outs in (("cpu", outs_cpu), ("device", outs_dev))}
        if kept["device"] != kept["cpu"]:
            problems.append(f"out tensors keep their memory: {kept['device']}, CPU {kept['cpu']}")
        if warned["device"] != warned["cpu"]:
            problems.append(f"warnings {warned['device']}, CPU {warned['cpu']}")
        ident_cpu = [r is o for r, o in zip(tensors_in(expected), outs_cpu)]
        ident_dev = [r is o for r, o in zip(tensors_in(actual), outs_dev)]
        if ident_cpu != ident_dev:
            problems.append(f"returned tensors are the out tensors: {ident_dev}, CPU {ident_cpu}")
        self.check(i, sample, [f"{variant} out: {p}" for p in problems])

    def wrong_device_out(self, i: int, sample, cpu_call: Callable[[], Any], dev_call: Callable[[], Any]) -> None:
        """out= tensors on the CPU for sunrise inputs: where the CPU accepts the call (with its
        out tensors), sunrise raises RuntimeError at the call (CUDA's rule) and keeps working;
        where the CPU refuses it, sunrise raises what the CPU raises."""
        try:
            self.run_cpu(cpu_call)
        except Exception:  # noqa: BLE001
            self.both(i, sample, cpu_call, dev_call)
            return
        try:
            self.run_device(dev_call)
        except RuntimeError as e:
            if self.raised_async:
                self.fail(i, sample, f"cpu out tensors: raised {exc_line(e)} only when synchronizing, not at the call")
            return
        except Exception as e:  # noqa: BLE001
            self.fail(i, sample, f"cpu out tensors: raised {exc_line(e)}, expected RuntimeError", "error", e)
        self.fail(i, sample, f"cpu out tensors for {DEVICE_TYPE} inputs were accepted (CPU and CUDA raise RuntimeError)")

    def inplace(self) -> None:
        for i, sample in enumerate(self.samples()):
            (c_in, _, _), (d_in, _, _), _, got = self.run_sample(i, sample, self.op.inplace_variant)
            if got is None:
                continue
            expected, actual, rnd = got
            problems = differences(expected, actual, self.tol, metadata_only=rnd, check_stride=True)
            problems += differences(c_in, d_in, self.tol, metadata_only=rnd, path="input after")
            if (expected is c_in) != (actual is d_in):
                problems.append(f"the result is the input: {actual is d_in}, CPU {expected is c_in}")
            self.check(i, sample, problems)

    def variants(self) -> None:
        """TestCommon.test_variant_consistency_eager's variants: method, operator, alias and
        in-place (where the result keeps the input's dtype), each on sunrise against the same
        variant on the CPU (whose variants agree with its function, or fail alike): the result
        and, for a single tensor result of a differentiable dtype, the gradient with respect to
        the sample's input."""
        op = self.op
        plain = [("method", op.method_variant), ("operator", op.operator_variant)]
        inplace = [("inplace", op.inplace_variant), ("inplace operator", op.inplace_operator_variant)]
        for alias in op.aliases:
            plain += [(f"alias {alias.name}", alias.op), (f"alias {alias.name} method", alias.method_variant)]
            inplace.append((f"alias {alias.name} inplace", alias.inplace_variant))
        variants = [(name, fn, False) for name, fn in plain if fn is not None]
        variants += [(name, fn, True) for name, fn in inplace if fn is not None]
        differentiable = op.supports_autograd and self.dtype in op.supported_backward_dtypes("cpu")
        for i, sample in enumerate(self.samples(requires_grad=differentiable)):
            self.info["samples"] += 1
            for name, fn, in_place in variants:
                if name.endswith("operator") and sample.kwargs:
                    continue  # Python's operators take no keyword arguments
                cpu_args, dev_args, _ = self.prepare(i, sample)
                cpu_input, dev_input = cpu_args[0], dev_args[0]  # the gradients' inputs
                if in_place:  # on clones: autograd's leaves stay unmodified
                    cpu_args, dev_args = (_cloned(cpu_input),) + cpu_args[1:], (_cloned(dev_input),) + dev_args[1:]
                got = self.both(i, sample, lambda: _call(fn, cpu_args), lambda: _call(fn, dev_args),
                                self.probe_of(fn, cpu_args))
                if got is None:
                    continue
                expected, actual, rnd = got
                self.info["compared"] += 1
                problems = differences(expected, actual, self.tol, metadata_only=rnd, path=name)
                if differentiable and isinstance(expected, torch.Tensor) and not rnd:
                    grads = self.both(i, sample, lambda: _input_grad(sample, expected, cpu_input),
                                      lambda: _input_grad(sample, actual, dev_input))
                    if grads is not None:
                        problems += differences(grads[0], grads[1], self.tol, path=f"{name} grad")
                self.check(i, sample, problems)

    def grad(self) -> None:
        fn = self.op
        gen = torch.Generator().manual_seed(self.seed)
        for i, sample in enumerate(self.samples(requires_grad=True)):
            self.info["samples"] += 1
            # Both sides are rebuilt from the sample by the same ExactCopy code, so their autograd
            # structure (leaves, views of leaves, views made without grad tracking) is the same.
            (c_in, c_args, c_kwargs), (d_in, d_args, d_kwargs), _ = self.prepare(i, sample)
            dev_leaves, cpu_leaves, seen = [], [], set()
            for d, c in zip(tensors_in((d_in, d_args, d_kwargs)), tensors_in((c_in, c_args, c_kwargs))):
                if d.requires_grad and id(d) not in seen:
                    seen.add(id(d))
                    dev_leaves.append(d)
                    cpu_leaves.append(c)
            if not dev_leaves:
                continue
            got = self.both(i, sample,
                            lambda: sample.output_process_fn_grad(fn(c_in, *c_args, **c_kwargs)),
                            lambda: sample.output_process_fn_grad(fn(d_in, *d_args, **d_kwargs)),
                            self.probe_of(fn, (c_in, c_args, c_kwargs)))
            if got is None:
                continue
            expected, actual, rnd = got
            exp_t, act_t = tensors_in(expected), tensors_in(actual)
            if len(exp_t) != len(act_t):
                self.fail(i, sample, f"{len(act_t)} output tensors, CPU {len(exp_t)}")
            pairs = [(e, a) for e, a in zip(exp_t, act_t)
                     if e.requires_grad and (e.dtype.is_floating_point or e.dtype.is_complex)]
            if any(not a.requires_grad for _, a in pairs):
                self.fail(i, sample, "an output requires grad on CPU but not on sunrise")
            if not pairs:
                continue
            grads_cpu = [random_like(e, gen) for e, _ in pairs]
            grads_dev = [g.to(self.device) for g in grads_cpu]
            got = self.both(
                i, sample,
                lambda: torch.autograd.grad([e for e, _ in pairs], cpu_leaves, grads_cpu, allow_unused=True),
                lambda: torch.autograd.grad([a for _, a in pairs], dev_leaves, grads_dev, allow_unused=True))
            if got is None:
                continue
            g_cpu, g_dev, rnd2 = got
            self.info["compared"] += 1
            problems = device_problems([g for g in g_dev if g is not None], "grad")
            problems += differences(list(g_cpu), list(g_dev), self.tol, metadata_only=rnd or rnd2, path="grad")
            self.check(i, sample, problems)

    def record(self, seconds: float, status: str) -> None:
        path = os.environ.get(RECORD_ENV)
        if not path:
            return
        rec = dict(self.info, seconds=round(seconds, 3), status=status, fallback=self.fallback, queued=self.queued,
                   sync_reasons=self.sync_reasons)
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


# OpInfos whose out= is Python code copying the results into the out tensors, which takes them on
# any device, on CUDA too (torch.lu: torch.functional._lu_with_infos).
OUT_COPIED_IN_PYTHON = {"lu"}

# out= tensors of test_out's cases (checks.Checker.out), made on the CPU.
OUT_VARIANTS = ("extremal", "strided", "empty", "wrong shape", "wrong device", "unsafe dtype")


def make_out(t: torch.Tensor, variant: str) -> torch.Tensor:
    """An out tensor for a result like t: full of the dtype's maximum (NaN for floating and
    complex dtypes, True for bool), values results rarely take."""
    if variant == "empty":
        return torch.empty(0, dtype=t.dtype)
    if variant == "unsafe dtype":
        return torch.zeros(t.shape, dtype=torch.long)
    shape = list(t.shape)
    if variant == "wrong shape":
        shape = shape[:-1] + [shape[-1] + 1] if shape else [2]
    if variant == "strided" and t.dim() > 0 and t.numel() > 1:
        o = torch.empty(*shape[:-1], shape[-1] * 2, dtype=t.dtype)[..., ::2]
    else:
        o = torch.empty(shape, dtype=t.dtype)
    if t.dtype == torch.bool:
        fill = True
    elif t.dtype.is_floating_point or t.dtype.is_complex:
        fill = float("nan")
    else:
        fill = torch.iinfo(t.dtype).max
    with torch.no_grad():
        o.fill_(fill)
    return o


def _call(fn: Callable, args: tuple) -> Any:
    inp, a, kw = args
    return fn(inp, *a, **kw)


def _cloned(x: Any) -> Any:
    """The sample input an in-place variant may modify: clones (views of the leaves, for autograd)."""
    if isinstance(x, torch.Tensor):
        return x.clone()
    return type(x)(_cloned(t) for t in x) if isinstance(x, (list, tuple)) else x


def _input_grad(sample, result: torch.Tensor, inp: Any) -> torch.Tensor | None:
    """The gradient of result (processed as the OpInfo says) with respect to the sample's input
    tensor (the first of a list), for an output gradient of ones; None where it takes no part."""
    tensor = inp if isinstance(inp, torch.Tensor) else inp[0]
    out = sample.output_process_fn_grad(result)
    if not (isinstance(out, torch.Tensor) and out.requires_grad and tensor.requires_grad):
        return None
    (grad,) = torch.autograd.grad(out, tensor, torch.ones_like(out), allow_unused=True)
    return grad


def random_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if t.dtype.is_complex:
        g = torch.complex(torch.randn(t.shape, generator=gen, dtype=torch.float64),
                          torch.randn(t.shape, generator=gen, dtype=torch.float64))
    else:
        g = torch.randn(t.shape, generator=gen, dtype=torch.float64)
    return g.to(t.dtype)


def inject_fault(fault: str | None) -> None:
    """Fault injection (common.injected): "crash" segfaults, "hang" sleeps, "exit" exits with 7;
    "wrong" is acted out by the Checker (``perturb``)."""
    if fault == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif fault == "hang":
        time.sleep(1e6)
    elif fault == "exit":
        os._exit(7)


def _run(checker: Checker) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation / resize warnings of the samples themselves
        if checker.kind in ("forward", "noncontiguous"):
            checker.forward(noncontiguous=checker.kind == "noncontiguous")
        elif checker.kind == "out":
            checker.out()
        elif checker.kind == "inplace":
            checker.inplace()
        elif checker.kind == "variants":
            checker.variants()
        elif checker.kind == "grad":
            checker.grad()
        else:
            raise ValueError(checker.kind)


def run_check(device: str, dtype, op, kind: str) -> None:
    """One test of tests/test_opinfo_device.py: check ``kind`` of (op, dtype). Raises
    ``Disagreement`` (an AssertionError) where sunrise disagrees with the CPU, SkipTest when the
    OpInfo cannot generate samples even on the CPU; with SUNRISE_OPINFO_RECORD set, appends a
    record of what it saw to that file."""
    checker = Checker(device, dtype, op, kind)
    inject_fault(injected(checker.key, kind, checker.dtype_name))
    t0 = time.monotonic()
    status = "failed"
    try:
        _run(checker)
        status = "passed"
    except unittest.SkipTest as e:
        status = "skipped"
        checker.info["reason"] = str(e)
        raise
    except BaseException as e:  # noqa: BLE001 - recorded, then re-raised
        if "reason" not in checker.info:
            checker.info["reason"] = one_line(exc_line(e), 400)
        raise
    finally:
        checker.record(time.monotonic() - t0, status)


def agreement(op, dtype: str, limit: int | None = 4, *, perturb: bool = False,
              progress: Callable[..., None] | None = None) -> dict:
    """The sweep's verdict on (op, dtype name): the forward check over the first ``limit`` samples
    (all if None), as a record {"op", "dtype", "outcome", "reason", "samples", ...}. outcome:

      agree     every sample agrees (a sample for which the CPU raises must raise on sunrise too)
      mismatch  a value / shape / dtype / device / aliasing differs, or sunrise did not raise
                where the CPU did
      error     sunrise raised where the CPU did not (sample generation included)
      skip      not counted: dtype unsupported on CPU, or the CPU cannot generate samples either
    """
    key = op_key(op)
    rec: dict[str, Any] = {"op": key, "dtype": dtype, "outcome": "agree", "reason": "", "samples": 0}
    torch_dtype = getattr(torch, dtype)
    if torch_dtype not in op.supported_dtypes("cpu"):
        rec.update(outcome="skip", reason="dtype not supported on CPU")
        return rec
    checker = Checker(f"{DEVICE_TYPE}:0", torch_dtype, op, "forward", limit=limit, progress=progress)
    checker.perturb = checker.perturb or perturb
    rec["metadata_only"] = checker.random_op
    try:
        _run(checker)
    except unittest.SkipTest as e:
        rec.update(outcome="skip", reason=str(e))
    except Disagreement as e:
        rec.update(outcome=e.outcome, reason=_at(checker) + checker.info["reason"], sample=checker.desc)
        if e.device_exc is not None:
            rec["traceback"] = "".join(traceback.format_exception(e.device_exc, limit=-6))
    except Exception as e:  # noqa: BLE001 - the harness itself failed on this sample (copying, comparing)
        rec.update(outcome="error", reason=_at(checker) + exc_line(e), sample=checker.desc,
                   traceback=traceback.format_exc(limit=-6))
    info = checker.info
    rec.update(samples=info["samples"], cpu_raised=info["cpu_raised"], fallback_ops=sorted(checker.fallback),
               queued_ops=sorted(checker.queued), sync_reasons=checker.sync_reasons)
    if info["random_samples"] and not checker.random_op:
        rec["random_samples"] = info["random_samples"]
    if "random_op" in info:
        rec["random_op"] = info["random_op"]
    if rec["outcome"] == "agree" and not info["samples"]:
        rec.update(outcome="skip", reason="no sample inputs")
    return rec


def _at(checker: Checker) -> str:
    return f"sample {checker.current}: " if checker.current >= 0 else ""


# ------------------------------------------------------------------ supported dtypes
# TestCommon.test_dtypes' question, asked of both devices with the same samples: on which dtypes
# does every sample of the OpInfo run (forward, or forward and backward) without raising?
ALL_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16,
              torch.uint32, torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64,
              torch.complex32, torch.complex64, torch.complex128)


def _outcome(op, call: tuple, output_process_fn_grad, backward: bool, device: str) -> str | None:
    """None when op(input, *args, **kwargs) (``call``) runs (and differentiates when
    ``backward``), else the class of its exception, with " (raised when synchronizing)" when the
    call returned and the device's work failed."""
    inp, args, kwargs = call
    try:
        result = op(inp, *args, **kwargs)
        if backward:
            outs = [t for t in tensors_in(output_process_fn_grad(result)) if t.requires_grad]
            if outs:
                (outs[0].abs() if outs[0].is_complex() else outs[0]).sum().backward()
    except Exception as e:  # noqa: BLE001 - any error means "not supported", as in test_dtypes
        if device != "cpu":
            try:
                torch.sunrise.synchronize()  # an asynchronous error must not land on the next sample
            except Exception:  # noqa: BLE001
                pass
        return type(e).__name__
    if device != "cpu":
        try:
            torch.sunrise.synchronize()
        except Exception as e:  # noqa: BLE001
            return type(e).__name__ + " (raised when synchronizing)"
    return None


def supported_dtypes(op, backward: bool) -> tuple[list[str], list[str], list[str]]:
    """(CPU's, sunrise's) supported dtypes of ``op`` and the samples on which both raise but not
    alike (another exception class, or sunrise's only when synchronizing): samples generated on
    sunrise, each run there and, as an exact copy, on the CPU (the same values, so data-dependent
    errors agree)."""
    cpu, dev, unlike = [], [], []
    for dtype in ALL_DTYPES:
        if backward and not (dtype.is_floating_point or dtype.is_complex):
            continue
        torch.manual_seed(stable_seed(op_key(op), dtype_name(dtype)))
        try:
            samples = list(op.sample_inputs(DEVICE_TYPE, dtype, requires_grad=backward))
        except Exception:  # noqa: BLE001 - sample generation refused: judged on the CPU alone
            samples = None
        if samples is None:
            try:
                if list(op.sample_inputs("cpu", dtype, requires_grad=backward)):
                    cpu.append(dtype_name(dtype))  # the CPU has samples and sunrise cannot make them
            except Exception:  # noqa: BLE001
                pass
            continue
        if not samples:
            continue
        cpu_ok = dev_ok = True
        for i, sample in enumerate(samples):
            call = (sample.input, sample.args, sample.kwargs)
            cpu_copy = ExactCopy("cpu")(call)
            assert not any(t.device.type == DEVICE_TYPE for t in tensors_in(cpu_copy))
            on_cpu = _outcome(op, cpu_copy, sample.output_process_fn_grad, backward, "cpu")
            on_dev = _outcome(op, call, sample.output_process_fn_grad, backward, DEVICE_TYPE)
            cpu_ok, dev_ok = cpu_ok and on_cpu is None, dev_ok and on_dev is None
            if on_cpu is not None and on_dev is not None and on_cpu != on_dev:
                unlike.append(f"{dtype_name(dtype)} sample {i}: {DEVICE_TYPE} raised {on_dev}, CPU {on_cpu}")
        if cpu_ok:
            cpu.append(dtype_name(dtype))
        if dev_ok:
            dev.append(dtype_name(dtype))
    return cpu, dev, unlike
