"""Memory statistics and control for sunrise devices, mirroring ``torch.cuda.memory``."""

from __future__ import annotations

import collections
from typing import Any, Union

import torch

from .. import _C

__all__ = [
    "empty_cache",
    "host_memory_stats",
    "max_memory_allocated",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_reserved",
    "memory_snapshot",
    "memory_stats",
    "memory_stats_as_nested_dict",
    "reset_accumulated_memory_stats",
    "reset_peak_memory_stats",
    "set_per_process_memory_fraction",
]

_DeviceLike = Union[torch.device, str, int, None]


def _index(device: _DeviceLike) -> int:
    from . import _device_index

    return _device_index(device)


def memory_stats_as_nested_dict(device: _DeviceLike = None) -> dict[str, Any]:
    """The caching allocator's statistics as a nested dictionary."""
    return _C._memory_stats(_index(device))


def memory_stats(device: _DeviceLike = None) -> dict[str, Any]:
    """The caching allocator's statistics with CUDA's flat keys
    (``"allocated_bytes.all.current"``, ...), ordered by key."""
    result = []

    def _flatten(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                _flatten(f"{prefix}.{k}" if prefix else k, v)
        else:
            result.append((prefix, obj))

    _flatten("", memory_stats_as_nested_dict(device))
    result.sort()
    return collections.OrderedDict(result)


def memory_allocated(device: _DeviceLike = None) -> int:
    """Bytes currently occupied by tensors on the device."""
    return memory_stats(device).get("allocated_bytes.all.current", 0)


def max_memory_allocated(device: _DeviceLike = None) -> int:
    """Peak bytes occupied by tensors since start or the last peak reset."""
    return memory_stats(device).get("allocated_bytes.all.peak", 0)


def memory_reserved(device: _DeviceLike = None) -> int:
    """Bytes held by the caching allocator (allocated or cached)."""
    return memory_stats(device).get("reserved_bytes.all.current", 0)


def max_memory_reserved(device: _DeviceLike = None) -> int:
    """Peak bytes held by the caching allocator."""
    return memory_stats(device).get("reserved_bytes.all.peak", 0)


def reset_peak_memory_stats(device: _DeviceLike = None) -> None:
    """Reset the "peak" statistics to their current values."""
    _C._reset_peak_memory_stats(_index(device))


def reset_accumulated_memory_stats(device: _DeviceLike = None) -> None:
    """Reset the accumulated (allocated / freed) counters."""
    _C._reset_accumulated_memory_stats(_index(device))


def empty_cache() -> None:
    """Return all unused cached device memory to the device."""
    _C._empty_cache()


def mem_get_info(device: _DeviceLike = None) -> tuple[int, int]:
    """(free, total) bytes of device memory, as ``torch.cuda.mem_get_info``."""
    return tuple(_C._mem_get_info(_index(device)))


def set_per_process_memory_fraction(fraction: float, device: _DeviceLike = None) -> None:
    """Cap this process's reserved memory on a device to ``fraction`` of its capacity."""
    _C._set_memory_fraction(float(fraction), _index(device))


def memory_snapshot() -> list[dict[str, Any]]:
    """Every segment of every device with its blocks, as ``torch.cuda.memory_snapshot``."""
    return _C._memory_snapshot()


def host_memory_stats() -> dict[str, Any]:
    """Statistics of the pinned host memory allocator."""
    return _C._host_memory_stats()
