"""``torch.sunrise``: the sunrise device module, mirroring ``torch.cuda``.

Device-generic code (``torch.amp``, ``torch.random``, ``torch.serialization``,
``torch.accelerator``, HuggingFace) calls these by name, so names and signatures
follow ``torch.cuda`` wherever an equivalent exists.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

from .. import _C

from ._utils import _DeviceLike, _device_index

_initialized = False
_init_lock = threading.Lock()
_queued_calls: list[tuple[Callable[[], None], list[str]]] = []


def is_available() -> bool:
    """True: the emulated device is always present (unless SUNRISE_DEVICE_COUNT is invalid)."""
    return _C._device_count() > 0


def is_initialized() -> bool:
    """Whether the device has been initialized in this process."""
    return _initialized and not _is_in_bad_fork()


def _is_in_bad_fork() -> bool:
    return _C._is_in_bad_fork()


def _lazy_call(callable: Callable[[], None], **kwargs: Any) -> None:
    if is_initialized():
        callable()
    else:
        _queued_calls.append((callable, traceback.format_stack()))


def _lazy_init() -> None:
    """Initialize the device (runtime, fork handler) once; runs queued calls."""
    global _initialized
    if is_initialized():
        return
    with _init_lock:
        if is_initialized():
            return
        if _is_in_bad_fork():
            raise RuntimeError(
                "Cannot re-initialize sunrise in forked subprocess. To use sunrise with "
                "multiprocessing, you must use the 'spawn' start method"
            )
        _C._init()
        _initialized = True
        for queued_call, origin in _queued_calls:
            try:
                queued_call()
            except Exception as e:
                raise RuntimeError(
                    "sunrise call failed lazily at initialization with error: "
                    f"{e}\n\nsunrise call was originally invoked at:\n\n{''.join(origin)}"
                ) from e
        _queued_calls.clear()


def init() -> None:
    """Initialize the sunrise device explicitly (normally lazy)."""
    _lazy_init()


def device_count() -> int:
    """Number of sunrise devices (``SUNRISE_DEVICE_COUNT``, default 2)."""
    return _C._device_count()


def current_device() -> int:
    """Index of the current sunrise device of this thread."""
    return _C._get_device()


def set_device(device: _DeviceLike) -> None:
    """Set the current sunrise device of this thread."""
    index = _device_index(device)
    if index >= 0:
        _C._set_device(index)


class device:
    """Context manager that changes the current sunrise device.

    Args:
        device: index, ``"sunrise:N"`` or ``torch.device``; a negative index or
            ``None`` makes it a no-op.
    """

    def __init__(self, device: _DeviceLike):
        self.idx = -1 if device is None else _device_index(device)
        self.prev_idx = -1

    def __enter__(self) -> None:
        self.prev_idx = _C._exchange_device(self.idx)

    def __exit__(self, *args: object) -> bool:
        if self.prev_idx >= 0:
            _C._set_device(self.prev_idx)
        return False


class device_of(device):
    """Context manager that makes the device of ``obj`` (a tensor) current."""

    def __init__(self, obj: torch.Tensor):
        super().__init__(obj.get_device() if obj.is_sunrise else -1)


def synchronize(device: _DeviceLike = None) -> None:
    """Wait for all work on all streams of a sunrise device to finish."""
    _lazy_init()
    _C._synchronize(_device_index(device))


def _sleep(cycles: int) -> None:
    """Keep the current stream busy for ``cycles`` device clock cycles (1 GHz: nanoseconds).

    ``torch.cuda._sleep``'s counterpart for tests and benchmarks that need a busy
    stream; the emulated device waits without taking a host core.
    """
    _lazy_init()
    _C._runtime.sleep(torch.sunrise.current_device(), int(cycles))


_SYNC_DEBUG_MODES = {"default": 0, "warn": 1, "error": 2}


def set_sync_debug_mode(debug_mode: int | str) -> None:
    """Warn or raise when an op makes the host wait for the device (``torch.cuda.set_sync_debug_mode``'s twin).

    ``"default"`` / 0: nothing; ``"warn"`` / 1: a UserWarning naming the op; ``"error"`` / 2: a
    RuntimeError before it waits. Reported: ``Tensor.item()`` and what reads device values on the
    host, copies to or from memory that is not pinned or without ``non_blocking=True``, results whose
    size depends on the data (``nonzero``, boolean indexing), ``torch.equal``, and ops that run on the
    CPU after synchronizing. Explicit waits (``synchronize``, ``Stream``/``Event.synchronize``) are not.
    """
    _lazy_init()
    if isinstance(debug_mode, str):
        if debug_mode not in _SYNC_DEBUG_MODES:
            raise RuntimeError("invalid value of debug_mode, expected one of `default`, `warn`, `error`")
        debug_mode = _SYNC_DEBUG_MODES[debug_mode]
    _C._set_sync_debug_mode(int(debug_mode))


def get_sync_debug_mode() -> int:
    """The current debug mode for synchronizing operations (0 default, 1 warn, 2 error)."""
    _lazy_init()
    return _C._get_sync_debug_mode()


@dataclass(frozen=True)
class _SunriseDeviceProperties:
    name: str
    total_memory: int
    multi_processor_count: int
    major: int
    minor: int
    max_threads_per_block: int
    warp_size: int
    shared_memory_per_block: int
    # Work estimated below this many microseconds on one core runs on the
    # device thread alone where that leaves the bits unchanged (SUNRISE_SERIAL_US).
    serial_work_us: int
    type: str = "sunrise"

    def __repr__(self) -> str:
        return (
            f"_SunriseDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
            f"total_memory={self.total_memory // (1024 * 1024)}MB, "
            f"multi_processor_count={self.multi_processor_count})"
        )


def get_device_properties(device: _DeviceLike = None) -> _SunriseDeviceProperties:
    """Properties of a sunrise device (name, memory, compute units, capability)."""
    _lazy_init()
    return _SunriseDeviceProperties(**_C._get_device_properties(_device_index(device)))


def get_device_name(device: _DeviceLike = None) -> str:
    """Name of a sunrise device."""
    return get_device_properties(device).name


def get_device_capability(device: _DeviceLike = None) -> tuple[int, int]:
    """(major, minor) compute capability of a sunrise device."""
    p = get_device_properties(device)
    return p.major, p.minor


def get_amp_supported_dtype() -> list[torch.dtype]:
    """Lower-precision dtypes that autocast may use on sunrise."""
    return [torch.bfloat16, torch.float16]


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """bfloat16 is supported natively by the sunrise device."""
    return True


def __getattr__(name: str) -> Any:
    # Inductor's lazy lookup of a PrivateUse1 backend's codegen (torch_sunrise.inductor).
    if name in ("Scheduling", "PythonWrapperCodegen"):
        from ..inductor import codegen_attribute

        return codegen_attribute(name)
    raise AttributeError(f"module 'torch.sunrise' has no attribute '{name}'")


from .random import *  # noqa: E402,F401,F403
from .random import __all__ as _random_all  # noqa: E402
from .memory import *  # noqa: E402,F401,F403
from .memory import __all__ as _memory_all  # noqa: E402
from .streams import *  # noqa: E402,F401,F403
from .streams import __all__ as _streams_all  # noqa: E402
from .graphs import *  # noqa: E402,F401,F403
from .graphs import __all__ as _graphs_all  # noqa: E402
from . import amp  # noqa: E402,F401  (torch.sunrise.amp, as torch.cuda.amp)

__all__ = [
    "current_device",
    "device",
    "device_count",
    "device_of",
    "get_amp_supported_dtype",
    "get_device_capability",
    "get_device_name",
    "get_device_properties",
    "get_sync_debug_mode",
    "init",
    "is_available",
    "is_bf16_supported",
    "is_initialized",
    "set_device",
    "set_sync_debug_mode",
    "synchronize",
    *_random_all,
    *_memory_all,
    *_streams_all,
    *_graphs_all,
]
