"""Memory statistics and control for sunrise devices, mirroring ``torch.cuda.memory``.

Everything here reads or drives the C++ caching device allocator
(``csrc/runtime/SunriseCachingAllocator.cpp``) and the pinned host allocator
(``csrc/runtime/SunriseHostAllocator.cpp``) through ``torch_sunrise._C``.

Memory history (``_record_memory_history``, ``_snapshot``, ``_dump_snapshot``)
has torch.cuda's formats, which PyTorch's memory visualizer reads; a device's
default stream is stream 0 there, as CUDA's null stream is.

Not provided: ``caching_allocator_enable`` / ``caching_allocator_disabled``,
memory pools (``MemPool``, ``use_mem_pool``) and pluggable allocators. ``list_gpu_processes``,
``memory_usage`` and ``utilization`` query NVML about physical GPUs and have no
meaning for the emulated device.
"""

from __future__ import annotations

import collections
import pickle
import sys
import threading
import warnings
from typing import Any, Optional, Union

import torch

from .. import _C
from ._utils import _DeviceLike
from ._utils import _device_index as _index

__all__ = [
    "caching_allocator_alloc",
    "caching_allocator_delete",
    "empty_cache",
    "get_per_process_memory_fraction",
    "host_memory_stats",
    "host_memory_stats_as_nested_dict",
    "max_memory_allocated",
    "max_memory_cached",
    "max_memory_reserved",
    "mem_get_info",
    "memory_allocated",
    "memory_cached",
    "memory_reserved",
    "memory_snapshot",
    "memory_stats",
    "memory_stats_as_nested_dict",
    "memory_summary",
    "reset_accumulated_host_memory_stats",
    "reset_accumulated_memory_stats",
    "reset_max_memory_allocated",
    "reset_max_memory_cached",
    "reset_peak_host_memory_stats",
    "reset_peak_memory_stats",
    "set_per_process_memory_fraction",
]


def _flatten(obj: dict[str, Any]) -> "collections.OrderedDict[str, Any]":
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, ordered by key (as torch.cuda does)."""
    result: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            result.append((prefix, value))

    walk("", obj)
    result.sort()
    return collections.OrderedDict(result)


# --------------------------------------------------------------------------
# statistics of the caching device allocator


def memory_stats_as_nested_dict(device: _DeviceLike = None) -> dict[str, Any]:
    """The caching allocator's statistics as a nested dictionary
    (``{"allocated_bytes": {"all": {"current": ...}}}``)."""
    return _C._memory_stats(_index(device))


def memory_stats(device: _DeviceLike = None) -> "collections.OrderedDict[str, Any]":
    """The caching allocator's statistics with CUDA's flat keys, ordered by key.

    ``"{allocation,segment,active,inactive_split}.{all,large_pool,small_pool}.{current,peak,allocated,freed}"``
    count blocks and ``"{allocated,reserved,active,inactive_split,requested}_bytes.<pool>.<metric>"``
    count bytes, as in :func:`torch.cuda.memory_stats`; plus ``num_alloc_retries``,
    ``num_ooms``, ``num_sync_all_streams``, ``num_device_alloc``, ``num_device_free``,
    ``oversize_allocations.*``, ``oversize_segments.*`` and ``max_split_size``.
    """
    return _flatten(memory_stats_as_nested_dict(device))


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


def memory_cached(device: _DeviceLike = None) -> int:
    """Deprecated alias of :func:`memory_reserved` (as ``torch.cuda.memory_cached``)."""
    warnings.warn(
        "`torch.sunrise.memory_cached` has been renamed to `torch.sunrise.memory_reserved`",
        FutureWarning,
        stacklevel=2,
    )
    return memory_reserved(device)


def max_memory_cached(device: _DeviceLike = None) -> int:
    """Deprecated alias of :func:`max_memory_reserved` (as ``torch.cuda.max_memory_cached``)."""
    warnings.warn(
        "`torch.sunrise.max_memory_cached` has been renamed to `torch.sunrise.max_memory_reserved`",
        FutureWarning,
        stacklevel=2,
    )
    return max_memory_reserved(device)


def reset_peak_memory_stats(device: _DeviceLike = None) -> None:
    """Reset the "peak" statistics to their current values."""
    _C._reset_peak_memory_stats(_index(device))


def reset_accumulated_memory_stats(device: _DeviceLike = None) -> None:
    """Reset the accumulated (``allocated`` / ``freed``) counters and the event counters."""
    _C._reset_accumulated_memory_stats(_index(device))


def reset_max_memory_allocated(device: _DeviceLike = None) -> None:
    """Deprecated: resets *all* peak statistics, as :func:`reset_peak_memory_stats`
    (as ``torch.cuda.reset_max_memory_allocated``)."""
    warnings.warn(
        "torch.sunrise.reset_max_memory_allocated now calls torch.sunrise.reset_peak_memory_stats, "
        "which resets /all/ peak memory stats.",
        FutureWarning,
        stacklevel=2,
    )
    reset_peak_memory_stats(device)


def reset_max_memory_cached(device: _DeviceLike = None) -> None:
    """Deprecated: resets *all* peak statistics, as :func:`reset_peak_memory_stats`
    (as ``torch.cuda.reset_max_memory_cached``)."""
    warnings.warn(
        "torch.sunrise.reset_max_memory_cached now calls torch.sunrise.reset_peak_memory_stats, "
        "which resets /all/ peak memory stats.",
        FutureWarning,
        stacklevel=2,
    )
    reset_peak_memory_stats(device)


# --------------------------------------------------------------------------
# control


def empty_cache() -> None:
    """Return all unused cached device memory (of every device) to the device.

    Blocks still referenced by tensors, or waiting for work on other streams
    (``Tensor.record_stream``), stay reserved."""
    _C._empty_cache()


def mem_get_info(device: _DeviceLike = None) -> tuple[int, int]:
    """``(free, total)`` bytes of device memory, as ``torch.cuda.mem_get_info``.

    ``free`` is the capacity minus what the runtime has handed out (to this
    process's caching allocator or to raw ``srMalloc`` calls)."""
    free, total = _C._mem_get_info(_index(device))
    return int(free), int(total)


def set_per_process_memory_fraction(fraction: float, device: _DeviceLike = None) -> None:
    """Cap this process's reserved memory on a device to ``fraction`` (0..1) of its capacity.

    An allocation that would exceed the cap first releases cached blocks, then
    raises ``torch.OutOfMemoryError`` whose message names this setting."""
    if isinstance(fraction, bool) or not isinstance(fraction, (float, int)):
        raise TypeError(f"Invalid type for fraction argument, must be `float`, got {type(fraction).__name__}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"Invalid fraction value: {fraction}. Allowed range: 0~1")
    _C._set_memory_fraction(float(fraction), _index(device))


def get_per_process_memory_fraction(device: _DeviceLike = None) -> float:
    """The cap set by :func:`set_per_process_memory_fraction` (1.0 when unset)."""
    return _C._get_memory_fraction(_index(device))


def reset_peak_host_memory_stats() -> None:
    """Reset the pinned host allocator's "peak" statistics to their current values."""
    _C._reset_peak_host_memory_stats()


def reset_accumulated_host_memory_stats() -> None:
    """Reset the pinned host allocator's accumulated counters."""
    _C._reset_accumulated_host_memory_stats()


def memory_snapshot(mempool_id: Optional[tuple[int, int]] = None, include_traces: bool = True) -> list[dict[str, Any]]:
    """Every segment of every device with its blocks, as ``torch.cuda.memory_snapshot``.

    Each segment has ``device``, ``address``, ``total_size``, ``allocated_size``,
    ``active_size``, ``requested_size``, ``stream``, ``segment_type``
    (``"large"``/``"small"``), ``segment_pool_id`` (a graph's private pool, or
    ``(0, 0)``), ``frames`` and ``blocks`` (``address``, ``size``,
    ``requested_size``, ``state`` in ``active_allocated`` /
    ``active_pending_free`` / ``inactive``, ``frames``). ``frames`` is the
    stack that allocated the segment or block while :func:`_record_memory_history`
    is on (empty otherwise). ``mempool_id`` selects the segments of one pool;
    ``include_traces`` is accepted for torch.cuda's signature (the history is in
    :func:`_snapshot`)."""
    segments = _C._memory_snapshot(include_traces=False)["segments"]
    if mempool_id is not None:
        segments = [s for s in segments if tuple(s["segment_pool_id"]) == tuple(mempool_id)]
    return segments


_HISTORY_ENABLED = (None, "state", "all")
_HISTORY_CONTEXT = (None, "state", "alloc", "all")


def _record_memory_history(enabled: Union[bool, str, None] = "all", *args: Any, **kwargs: Any) -> None:
    """Record the stacks of allocations and a history of allocator events, as
    ``torch.cuda.memory._record_memory_history``:
    ``_record_memory_history(enabled="all", context="all", stacks="all", max_entries=sys.maxsize,
    device=None, clear_history=False)``.

    ``enabled``: ``"all"`` keeps a history of the last ``max_entries`` events
    per device (allocations, frees requested and completed, segments reserved
    and released, out-of-memory) besides the stack of each live block;
    ``"state"`` keeps only the stacks of live blocks; ``None`` stops and forgets.
    ``context``: which get a stack (``"state"``: live blocks, ``"alloc"``: also
    allocations in the history, ``"all"``: also frees, ``None``: nothing).
    ``stacks``: ``"python"`` for Python frames, ``"all"`` for Python and C++.
    Python frames come from the threads that run Python (your model's);
    allocations on autograd's backward threads have C++ frames only, with
    ``stacks="all"``. ``device`` is accepted for torch.cuda's signature: the
    history covers every sunrise device.

    The legacy form, ``enabled=True/False`` with ``record_context``,
    ``trace_alloc_max_entries``, ``trace_alloc_record_context`` and
    ``record_context_cpp``, means what it means on CUDA.

    Read it with :func:`_snapshot` or :func:`_dump_snapshot`; PyTorch's
    ``torch.cuda._memory_viz`` and the memory_viz page show it.
    """
    if isinstance(enabled, bool):
        _record_memory_history_legacy(enabled, *args, **kwargs)
    else:
        _record_memory_history_impl(enabled, *args, **kwargs)


def _record_memory_history_impl(
    enabled: Optional[str] = "all",
    context: Optional[str] = "all",
    stacks: str = "all",
    max_entries: int = sys.maxsize,
    device: _DeviceLike = None,
    clear_history: bool = False,
) -> None:
    if enabled not in _HISTORY_ENABLED:
        raise ValueError(f"enabled must be one of {_HISTORY_ENABLED}, not {enabled!r}")
    if context not in _HISTORY_CONTEXT:
        raise ValueError(f"context must be one of {_HISTORY_CONTEXT}, not {context!r}")
    if stacks not in ("python", "all"):
        raise ValueError(f"stacks must be 'python' or 'all', not {stacks!r}")
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, not {max_entries}")
    if device is not None:
        _index(device)  # validates it
    if enabled is None:
        context = None
    elif enabled == "state" and context is not None:
        context = "state"  # no history: only live blocks can keep a stack
    _C._record_memory_history(enabled == "all", context or "", stacks == "all", min(max_entries, 2**62), clear_history)


def _record_memory_history_legacy(
    enabled: bool,
    record_context: bool = True,
    trace_alloc_max_entries: int = 1,
    trace_alloc_record_context: bool = False,
    device: _DeviceLike = None,
    record_context_cpp: bool = False,
    clear_history: bool = False,
) -> None:
    if device is not None:
        _index(device)
    context = ("alloc" if trace_alloc_record_context else "state") if enabled and record_context else ""
    _C._record_memory_history(enabled, context, record_context_cpp, max(1, trace_alloc_max_entries), clear_history)


def _snapshot(device: _DeviceLike = None, augment_with_fx_traces: bool = False) -> dict[str, Any]:
    """The allocator's state and history, as ``torch.cuda.memory._snapshot()``:
    ``{"segments": [...], "device_traces": [[...] per device], "allocator_settings":
    {...}, "external_annotations": []}``. ``device_traces[d]`` lists device
    ``d``'s events, oldest first, each with ``action``, ``addr``, ``size``,
    ``stream`` (0: the device's default stream), ``time_us`` and ``frames``.
    ``augment_with_fx_traces`` maps frames in code that ``torch.compile``
    generated back to the model's source, as on CUDA."""
    if device is not None:
        _index(device)
    snapshot = _C._memory_snapshot()
    if augment_with_fx_traces:
        from torch._utils import _augment_memory_snapshot_stack_traces

        snapshot = _augment_memory_snapshot_stack_traces(snapshot)
    return snapshot


def _dump_snapshot(filename: str = "dump_snapshot.pickle", augment_with_fx_traces: bool = False) -> None:
    """Pickle :func:`_snapshot` to ``filename``, for the memory_viz page or
    ``python -m torch.cuda._memory_viz trace_plot FILE -o out.html``."""
    snapshot = _snapshot(augment_with_fx_traces=augment_with_fx_traces)
    with open(filename, "wb") as f:
        pickle.dump(snapshot, f)


# --------------------------------------------------------------------------
# raw allocations (interop with other libraries)

_raw_blocks: dict[int, torch.Tensor] = {}
_raw_lock = threading.Lock()


def _resolve_stream(stream: Any) -> Optional[torch.Stream]:
    """A torch.Stream for ``stream`` (None, a torch.Stream or a native ``srStream_t`` int)."""
    from .streams import _stream_from_handle

    if stream is None or isinstance(stream, torch.Stream):
        return stream
    if isinstance(stream, int) and not isinstance(stream, bool):
        return _stream_from_handle(stream)
    raise TypeError(
        "Invalid type for stream argument, must be `torch.sunrise.Stream` (or torch.Stream) or an int "
        "holding a sunrise stream handle (Stream.sunrise_stream)"
    )


def caching_allocator_alloc(size: int, device: _DeviceLike = None, stream: Any = None) -> int:
    """Allocate ``size`` bytes of device memory from the caching allocator and
    return the device pointer as an int, as ``torch.cuda.caching_allocator_alloc``.

    Args:
        size: bytes to allocate.
        device: the device (default: the current one).
        stream: a ``torch.sunrise.Stream`` / ``torch.Stream`` or a raw stream handle
            (``Stream.sunrise_stream``); default: the device's current stream. The
            block belongs to that stream, as every caching-allocator block does.

    Implemented in Python: the memory is an uint8 ``torch.empty`` kept alive in
    a module-level table until :func:`caching_allocator_delete` is called with
    the returned pointer, so it is counted in :func:`memory_allocated` like any
    tensor. A size of 0 returns 0 (no allocation).
    """
    from .streams import stream as _stream_ctx

    if size < 0:
        raise ValueError(f"size must be non-negative, got {size}")
    index = _index(device)
    s = _resolve_stream(stream)
    if s is not None and s.device_index != index:
        if device is not None:
            raise ValueError(f"stream {s} is not on sunrise:{index}")
        index = s.device_index
    if size == 0:
        return 0
    from . import device as _device_ctx

    with _device_ctx(index), _stream_ctx(s):
        block = torch.empty(int(size), dtype=torch.uint8, device=torch.device("sunrise", index))
    ptr = block.data_ptr()
    with _raw_lock:
        _raw_blocks[ptr] = block
    return ptr


def caching_allocator_delete(mem_ptr: int) -> None:
    """Free memory obtained from :func:`caching_allocator_alloc`, as
    ``torch.cuda.caching_allocator_delete``: the block goes back to the caching
    allocator (on the stream it was allocated on). ``0`` is a no-op; any other
    pointer not from :func:`caching_allocator_alloc` raises ``RuntimeError``."""
    if mem_ptr == 0:
        return
    with _raw_lock:
        block = _raw_blocks.pop(int(mem_ptr), None)
    if block is None:
        raise RuntimeError(f"invalid device pointer: {int(mem_ptr):#x} was not allocated by caching_allocator_alloc")
    del block


# --------------------------------------------------------------------------
# pinned host memory


def host_memory_stats_as_nested_dict() -> dict[str, Any]:
    """The pinned host allocator's statistics as a nested dictionary."""
    return _C._host_memory_stats()


def host_memory_stats() -> "collections.OrderedDict[str, Any]":
    """Statistics of the pinned host memory allocator with CUDA's flat keys, as
    ``torch.cuda.host_memory_stats``: ``"{allocations,allocated_bytes,active_requests,
    active_bytes}.{current,peak,allocated,freed}"`` (blocks/bytes owned by the
    allocator, blocks/bytes handed out to tensors), ``num_host_alloc`` and
    ``num_host_free``. Sizes are the power-of-two block sizes."""
    return _flatten(host_memory_stats_as_nested_dict())


# --------------------------------------------------------------------------
# memory_summary

_UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))

# (row label, stat prefix, is a byte count, broken down by pool)
_SUMMARY_ROWS = (
    ("Allocated memory", "allocated_bytes", True, True),
    ("Active memory", "active_bytes", True, True),
    ("Requested memory", "requested_bytes", True, True),
    ("Device reserved memory", "reserved_bytes", True, True),
    ("Non-releasable memory", "inactive_split_bytes", True, True),
    ("Allocations", "allocation", False, True),
    ("Active allocs", "active", False, True),
    ("Device reserved segments", "segment", False, True),
    ("Non-releasable allocs", "inactive_split", False, True),
    ("Oversize allocations", "oversize_allocations", False, False),
    ("Oversize device segments", "oversize_segments", False, False),
)
_SUMMARY_COLUMNS = (("Cur Usage", "current"), ("Peak Usage", "peak"), ("Tot Alloc", "allocated"), ("Tot Freed", "freed"))
_LABEL_WIDTH = 28
_CELL_WIDTH = 13


def _human_bytes(n: int) -> str:
    """``1536`` -> ``"1.50 KiB"``; below 1 KiB the exact count (``"512 B"``)."""
    for scale, unit in _UNITS:
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _table_line(label: str, cells: list[str]) -> str:
    return "| " + label.ljust(_LABEL_WIDTH) + "|" + "|".join(c.rjust(_CELL_WIDTH - 1) + " " for c in cells) + "|"


def memory_summary(device: _DeviceLike = None, abbreviated: bool = False) -> str:
    """A human-readable table of the caching allocator's statistics for a device,
    as ``torch.cuda.memory_summary``; handy to print during training or after an
    out-of-memory error.

    One row per statistic (allocated / active / requested / reserved /
    non-releasable memory, then the matching block counts and the oversize
    counters) and four columns: ``Cur Usage``, ``Peak Usage``, ``Tot Alloc``
    and ``Tot Freed``. Sizes are in B / KiB / MiB / GiB with two decimals.
    Unless ``abbreviated``, each pooled row is followed by its ``from large
    pool`` and ``from small pool`` parts.
    """
    index = _index(device)
    stats = memory_stats(index)
    free, total = mem_get_info(index)
    width = len(_table_line("", [""] * len(_SUMMARY_COLUMNS)))
    heavy, light = "=" * width, "-" * width

    def text_line(text: str) -> str:
        return "| " + text.ljust(width - 4) + " |"

    lines = [
        heavy,
        text_line(f"sunrise:{index} caching allocator memory summary"),
        light,
        text_line(
            f"device capacity {_human_bytes(total)}, free {_human_bytes(free)}; "
            f"device mallocs {stats.get('num_device_alloc', 0)}, frees {stats.get('num_device_free', 0)}"
        ),
        text_line(
            f"allocation retries {stats.get('num_alloc_retries', 0)}, out-of-memory errors "
            f"{stats.get('num_ooms', 0)}, syncs of all streams {stats.get('num_sync_all_streams', 0)}"
        ),
        heavy,
        _table_line("Metric", [title for title, _ in _SUMMARY_COLUMNS]),
    ]
    pools = (("all", None),) if abbreviated else (("all", None), ("large_pool", "large"), ("small_pool", "small"))
    for label, prefix, is_bytes, pooled in _SUMMARY_ROWS:
        lines.append(light)
        for pool, pool_name in pools if pooled else (("all", None),):
            key = f"{prefix}.{pool}" if pooled else prefix
            cells = []
            for _, metric in _SUMMARY_COLUMNS:
                value = int(stats.get(f"{key}.{metric}", 0))
                cells.append(_human_bytes(value) if is_bytes else str(value))
            row_label = label if pool_name is None else f"    from {pool_name} pool"
            lines.append(_table_line(row_label, cells))
    lines.append(heavy)
    return "\n".join(lines) + "\n"
