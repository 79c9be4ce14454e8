"""Run code written for CUDA on sunrise, unchanged: ``import torch_sunrise.transfer_to_sunrise``
(one added line) or ``sunrise-run script.py [args]`` (no edit at all).

Opt-in, never loaded by ``import torch``. Once imported, "cuda" means the sunrise device:

* device arguments: ``"cuda"``, ``"cuda:N"`` and ``torch.device("cuda", N)`` become sunrise devices
  wherever PyTorch takes a device — tensor factories, ``Tensor.to``/``new_*``/``pin_memory``,
  ``Module.to``, ``torch.load``'s ``map_location`` (and checkpoints saved on CUDA, whose ``cuda:N``
  location tags land on ``sunrise:N``), ``torch.Generator``, ``torch.set_default_device`` and
  ``with torch.device("cuda"):``, ``DataLoader(pin_memory_device=)``, autocast and ``GradScaler``.
  Integer device ids already mean the accelerator in PyTorch. ``torch.device`` itself is not
  replaced: ``torch.device("cuda")`` is still a CUDA device object until it is used;
* ``Tensor.cuda()`` / ``Module.cuda()`` / storages' ``.cuda()`` move to sunrise, ``Tensor.is_cuda`` is
  true for sunrise tensors;
* ``torch.cuda.*`` is ``torch.sunrise.*`` for the names both have (``_MAPPED`` lists them; the rest
  of ``torch.cuda`` is left as it is), ``torch.cuda.amp`` is ``torch.sunrise.amp``, ``CUDAGraph`` is
  ``SunriseGraph``;
* ``torch.distributed`` with ``backend="nccl"`` uses sunrise's collective backend (``"sccl"``).

``torch.cuda.is_available()`` answers True to your code, and truthfully (False) when called from
code that would take a CUDA-only path after it: PyTorch's own internals and the libraries in
``_CUDA_ONLY_CALLERS`` (Triton, bitsandbytes, flash-attn, xformers, apex, ...). A warning says once
that the shim is active. What it maps is listed in docs/cuda_code.md.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys
import threading
import warnings
from typing import Any, Callable, Optional, Sequence

import torch
import torch.profiler
import torch.utils._device
import torch.utils.data

import torch_sunrise  # noqa: F401  (registers the device)

_CUDA = "cuda"
_SUNRISE = "sunrise"

# Callers of torch.cuda.is_available() that would take a CUDA-only path after a True: they get
# the truth (module name prefixes).
_CUDA_ONLY_CALLERS = ("torch.", "triton", "bitsandbytes", "flash_attn", "xformers", "apex", "vllm", "deepspeed")

# torch functions with a `device` argument (factories and friends).
_DEVICE_FUNCTIONS = (
    "arange", "as_tensor", "asarray", "bartlett_window", "blackman_window", "empty", "empty_like",
    "empty_permuted", "empty_strided", "eye", "full", "full_like", "hamming_window", "hann_window",
    "kaiser_window", "linspace", "logspace", "normal", "ones", "ones_like", "rand", "rand_like", "randint",
    "randint_like", "randn", "randn_like", "randperm", "range", "scalar_tensor", "sparse_coo_tensor",
    "sparse_csr_tensor", "tensor", "tril_indices", "triu_indices", "zeros", "zeros_like", "frombuffer",
    "set_default_device", "get_autocast_dtype", "is_autocast_enabled", "set_autocast_enabled",
    "set_autocast_dtype",
)
_TENSOR_METHODS = ("to", "new_empty", "new_empty_strided", "new_full", "new_ones", "new_tensor", "new_zeros",
                   "pin_memory", "is_pinned")

_applied = False
_MAPPED: list[str] = []  # the torch.cuda names this shim maps


def _map(device: Any) -> Any:
    """A sunrise device for a CUDA one ("cuda", "cuda:1", torch.device("cuda", 1)); anything else as is."""
    if isinstance(device, str):
        if device == _CUDA or device.startswith(_CUDA + ":"):
            return _SUNRISE + device[len(_CUDA):]
        return device
    if isinstance(device, torch.device) and device.type == _CUDA:
        return torch.device(_SUNRISE, device.index)
    return device


def _with_devices_mapped(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with CUDA devices among its arguments (``device=``, ``device_type=``, positional) mapped."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_map(a) for a in args)
        for key in ("device", "device_type", "pin_memory_device", "output_device"):
            if key in kwargs:
                kwargs[key] = _map(kwargs[key])
        if isinstance(kwargs.get("device_ids"), (list, tuple)):
            kwargs["device_ids"] = [_map(d) for d in kwargs["device_ids"]]
        return fn(*args, **kwargs)

    return wrapper


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """``owner.name = make(owner.name)``, once: the wrapper keeps the original as ``__sunrise_wrapped__``."""
    original = getattr(owner, name, None)
    if original is None or getattr(original, "__sunrise_wrapped__", None) is not None:
        return
    wrapper = make(original)
    wrapper.__sunrise_wrapped__ = original
    setattr(owner, name, wrapper)


def _cuda_only_caller(depth: int = 2) -> bool:
    """Whether the function that called ours (``depth`` frames up) would take a CUDA-only path."""
    caller = sys._getframe(depth).f_globals.get("__name__", "")
    return caller == "torch" or caller.startswith(_CUDA_ONLY_CALLERS)


def _by_caller(original: Callable[..., Any], replacement: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.cuda.X`` under the shim: sunrise's X for your code, the real one (which says there is
    no CUDA) for PyTorch's internals and CUDA-only libraries."""

    mapped = _with_devices_mapped(replacement)  # torch.cuda.set_device(torch.device("cuda", 1)), ...

    @functools.wraps(replacement)
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        if _cuda_only_caller():
            return original(*args, **kwargs)
        return mapped(*args, **kwargs)

    return dispatch


class _GeneratorType(type(torch._C.Generator)):  # type: ignore[misc]
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, torch._C.Generator)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, torch._C.Generator)


class _Generator(torch._C.Generator, metaclass=_GeneratorType):
    """``torch.Generator`` accepting ``device="cuda"``; every generator is still an instance of it."""

    def __new__(cls, device: Any = "cpu") -> torch._C.Generator:
        return torch._C.Generator(_map(device))


def _restore_location(storage: Any, location: str) -> Any:
    return torch.serialization.default_restore_location(storage, _map(location))


def _load(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        if map_location is None:
            map_location = _restore_location  # checkpoints saved on CUDA land on sunrise
        elif isinstance(map_location, dict):
            map_location = {k: _map(v) for k, v in map_location.items()}
        else:
            map_location = _map(map_location)
        return original(f, map_location, *args, **kwargs)

    return load


def _map_backend(backend: str) -> str:
    """``"nccl"`` (also in ``"cpu:gloo,cuda:nccl"``) is sunrise's collective backend, ``"sccl"``."""
    return backend.replace("nccl", "sccl").replace("cuda:", "sunrise:")


def _distributed_backend(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        backend = kwargs.get("backend")
        if isinstance(backend, str):
            kwargs["backend"] = _map_backend(backend)
        elif args and isinstance(args[0], str):
            args = (_map_backend(args[0]),) + args[1:]
        if "device_id" in kwargs:
            kwargs["device_id"] = _map(kwargs["device_id"])
        return original(*args, **kwargs)

    return call


def _profiler_activities(original: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.profiler.profile(activities=[ProfilerActivity.CUDA, ...])``: the device's activity."""

    def mapped(activities: Any) -> Any:
        if activities is None:
            return None
        cuda, device = torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.PrivateUse1
        return [device if a == cuda else a for a in activities]

    @functools.wraps(original)
    def init(self: Any, *, activities: Any = None, **kwargs: Any) -> None:
        original(self, activities=mapped(activities), **kwargs)

    return init


class _Nvtx:
    """``torch.cuda.nvtx`` as profiler ranges: NVTX ranges become ``record_function`` scopes, which
    sunrise traces show (device work inside is linked to them)."""

    _open = threading.local()

    @staticmethod
    def _stack() -> list:
        """This thread's open ranges."""
        return _Nvtx._open.__dict__.setdefault("stack", [])

    @staticmethod
    def range_push(msg: str) -> int:
        scope = torch.autograd.profiler.record_function(msg)
        scope.__enter__()
        stack = _Nvtx._stack()
        stack.append(scope)
        return len(stack) - 1

    @staticmethod
    def range_pop() -> int:
        stack = _Nvtx._stack()
        if stack:
            stack.pop().__exit__(None, None, None)
        return len(stack)

    @staticmethod
    def range(msg: str, *args: Any, **kwargs: Any) -> Any:
        return torch.autograd.profiler.record_function(msg.format(*args, **kwargs))

    @staticmethod
    def mark(msg: str) -> None:
        pass


def _can_device_access_peer(device: Any, peer_device: Any) -> bool:
    """Sunrise devices copy to each other directly."""
    torch.sunrise.get_device_properties(_map(device))
    torch.sunrise.get_device_properties(_map(peer_device))
    return True


# torch.cuda names with no torch.sunrise twin of the same name.
_EXTRA = {
    "CUDAGraph": lambda: torch.sunrise.SunriseGraph,
    "nvtx": lambda: _Nvtx,
    "can_device_access_peer": lambda: _can_device_access_peer,
    "get_arch_list": lambda: (lambda: []),
    "ipc_collect": lambda: (lambda: None),
    "_sleep": lambda: torch.sunrise._sleep,  # private, but what CUDA tests use to keep a stream busy
}
# torch.cuda's submodules that torch.sunrise has too.
_SUBMODULES = ("memory", "random", "graphs", "streams")


def _map_torch_cuda() -> None:
    """``torch.cuda.X = torch.sunrise.X`` for torch.cuda's public API that sunrise has, and _EXTRA."""
    sunrise = torch.sunrise
    targets = {name: getattr(sunrise, name) for name in sorted(set(torch.cuda.__all__) | set(_SUBMODULES))
               if name not in _EXTRA and name != "amp" and getattr(sunrise, name, None) is not None}
    targets.update((name, make()) for name, make in _EXTRA.items())
    for name, target in targets.items():
        original = getattr(torch.cuda, name, None)
        if callable(target) and not isinstance(target, type) and callable(original):
            target = _by_caller(original, target)
        setattr(torch.cuda, name, target)
        _MAPPED.append(name)
    # torch.cuda.amp stays the module PyTorch's own code knows; its public names become sunrise's.
    for name in sunrise.amp.__all__:
        setattr(torch.cuda.amp, name, getattr(sunrise.amp, name))
    _MAPPED.append("amp")


def apply() -> None:
    """Make "cuda" mean the sunrise device in this process (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    if not torch.sunrise.is_available():
        raise RuntimeError("torch_sunrise.transfer_to_sunrise: the sunrise device is not available")

    # `with torch.device(...)` recognizes factories by identity in a cached set: fill it with the
    # originals before they are wrapped.
    torch.utils._device._device_constructors()
    for name in _DEVICE_FUNCTIONS:
        _patch(torch, name, _with_devices_mapped)
    for name in _TENSOR_METHODS:
        _patch(torch.Tensor, name, _with_devices_mapped)
    _patch(torch.nn.Module, "to", _with_devices_mapped)
    torch.Tensor.cuda = lambda self, device=None, non_blocking=False, **kw: self.sunrise(  # type: ignore[method-assign]
        _map(device), non_blocking, **kw)
    torch.Tensor.is_cuda = property(lambda self: self.device.type in (_CUDA, _SUNRISE))  # type: ignore[assignment]
    torch.nn.Module.cuda = lambda self, device=None: self.sunrise(_map(device))  # type: ignore[method-assign]
    for storage in (torch.UntypedStorage, torch.TypedStorage):
        storage.cuda = lambda self, device=None, non_blocking=False: self.sunrise(  # type: ignore[method-assign]
            _map(device), non_blocking)
    torch.Generator = _Generator  # type: ignore[misc]
    _patch(torch.amp.autocast_mode.autocast, "__init__", _with_devices_mapped)
    _patch(torch.amp.GradScaler, "__init__", _with_devices_mapped)
    _patch(torch.utils._device.DeviceContext, "__init__", _with_devices_mapped)
    _patch(torch.utils.data.DataLoader, "__init__", _with_devices_mapped)
    _patch(torch, "load", _load)
    _patch(torch.profiler.profile, "__init__", _profiler_activities)
    import torch.distributed as dist

    if dist.is_available():
        import torch_sunrise.distributed  # noqa: F401  (registers sccl)

        _patch(dist, "init_process_group", _distributed_backend)
        _patch(dist, "new_group", _distributed_backend)
        _patch(torch.nn.parallel.DistributedDataParallel, "__init__", _with_devices_mapped)
    _map_torch_cuda()
    warnings.warn(
        "torch_sunrise.transfer_to_sunrise is active: 'cuda' devices, torch.cuda and backend='nccl' now mean "
        "the sunrise device (docs/cuda_code.md lists what is mapped)",
        stacklevel=3,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``sunrise-run script.py [args]`` or ``sunrise-run -m module [args]``: run CUDA code on sunrise."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: sunrise-run script.py [args...] | sunrise-run -m module [args...]\n"
              "Runs a script written for CUDA on the sunrise device, unchanged.")
        return 0 if argv else 2
    apply()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("sunrise-run: -m needs a module name", file=sys.stderr)
            return 2
        sys.argv = argv[1:]
        sys.path.insert(0, os.getcwd())  # as `python -m` does
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))  # as `python script.py` does
        runpy.run_path(argv[0], run_name="__main__")
    return 0


apply()


if __name__ == "__main__":
    sys.exit(main())
