"""Streams and events for sunrise devices, mirroring ``torch.cuda.Stream``,
``torch.cuda.Event``, ``torch.cuda.current_stream`` and friends.

Streams are generic ``torch.Stream`` objects of device type sunrise (so a
``torch.sunrise.Stream`` and a ``torch.Stream(device="sunrise")`` naming the
same stream compare and hash equal); the device's guard implementation
(``csrc/runtime/SunriseGuardImpl.cpp``) gives them their behaviour. This module
adds what ``torch.cuda`` has on top: ``priority``, ``priority_range``, the
native handle, ``record_event`` returning a :class:`Event`, and
``stream()`` switching the current device as CUDA's does.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from .. import _C

__all__ = ["Event", "Stream", "StreamContext", "current_stream", "default_stream", "set_stream", "stream"]

from ._utils import _DeviceLike, _device_index

# Stream ids per device, as laid out in include/torch_sunrise/SunriseStream.h:
# 0 is the default stream, 1..kStreamsPerPool the normal-priority pool and
# kStreamsPerPool+1..2*kStreamsPerPool the high-priority pool.
# Stream ids per device: the default stream and the two priority pools.
_STREAM_IDS_PER_DEVICE = 1 + 2 * _C._streams_per_pool


def _index(device: _DeviceLike) -> int:
    return _device_index(device, negative_is_current=True)


class Stream(torch.Stream):
    """A sunrise stream: an in-order queue of device work, as ``torch.cuda.Stream``.

    Work queued on different streams may run concurrently; use
    :meth:`wait_stream`, :meth:`wait_event` or events to order it. A stream is a
    context manager that makes it current (``with s: ...``), as
    ``torch.sunrise.stream(s)`` does.

    Args:
        device: the device (default, ``None`` or a negative index: the current one).
        priority: ``0`` (normal) or negative (high priority; any negative value
            maps to the highest priority ``-1``, positive values to ``0``).
            Lower runs first, as in CUDA; see :meth:`priority_range`.
    """

    def __new__(cls, device: _DeviceLike = None, priority: int = 0, **kwargs: Any) -> "Stream":
        if "stream_id" in kwargs:  # wrapping an existing stream (current_stream() & co.)
            return super().__new__(cls, **kwargs)
        return super().__new__(cls, device=torch.device("sunrise", _index(device)), priority=int(priority))

    @staticmethod
    def priority_range() -> tuple[int, int]:
        """``(least, greatest)`` stream priority: ``(0, -1)``, as ``torch.cuda.Stream.priority_range``."""
        least, greatest = _C._stream_priority_range()
        return int(least), int(greatest)

    @property
    def priority(self) -> int:
        """This stream's priority: ``0`` (default and normal streams) or ``-1`` (high)."""
        return _C._stream_priority(self.stream_id, self.device_index)

    @property
    def sunrise_stream(self) -> int:
        """The runtime's stream handle (an ``srStream_t``) as an int."""
        return _C._stream_handle(self.stream_id, self.device_index)

    def wait_event(self, event: torch.Event) -> None:
        """Make all future work submitted to this stream wait for ``event``.
        Returns at once; only later work on this stream is affected."""
        event.wait(self)

    def wait_stream(self, stream: torch.Stream) -> None:
        """Make all future work submitted to this stream wait until the work
        queued on ``stream`` so far has completed. Returns at once."""
        event = Event()
        event.record(stream)
        self.wait_event(event)

    def record_event(self, event: Optional[torch.Event] = None) -> "Event":
        """Record ``event`` (a new :class:`Event` if ``None``) on this stream and return it."""
        if event is None:
            event = Event()
        event.record(self)
        return event

    def __repr__(self) -> str:
        return (
            f"<torch.sunrise.Stream device={self.device} stream_id={self.stream_id} "
            f"priority={self.priority} sunrise_stream={self.sunrise_stream:#x}>"
        )


class Event(torch.Event):
    """A sunrise event, as ``torch.cuda.Event``: marks a point in a stream, to
    wait for it from the host (:meth:`synchronize`, :meth:`query`), to order
    another stream after it (:meth:`wait`) or to time device work
    (:meth:`elapsed_time`). The runtime event is created when first recorded,
    on the recording stream's device.

    Args:
        enable_timing: record device timestamps for :meth:`elapsed_time`
            (default False: cheaper, as in CUDA).
        blocking: accepted for compatibility and kept in ``self.blocking``;
            ``torch.Event`` does not pass it to the device, so
            :meth:`synchronize` always waits the same way (spin, then sleep).
        interprocess: unsupported on the emulated device (must be False).
    """

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> "Event":
        if interprocess:
            raise ValueError("sunrise events cannot be shared between processes")
        self = super().__new__(cls, device="sunrise", enable_timing=enable_timing, blocking=blocking)
        self.enable_timing = bool(enable_timing)
        self.blocking = bool(blocking)
        return self

    def record(self, stream: Optional[torch.Stream] = None) -> None:
        """Record the event on ``stream`` (default: the current stream of the
        current device). The stream's device must be the event's device once
        it has been recorded."""
        super().record(current_stream() if stream is None else stream)

    def wait(self, stream: Optional[torch.Stream] = None) -> None:
        """Make future work on ``stream`` (default: the current stream) wait for this event."""
        super().wait(current_stream() if stream is None else stream)

    def elapsed_time(self, end_event: torch.Event) -> float:
        """Milliseconds of device time between this event and ``end_event``;
        both must have been created with ``enable_timing=True`` and recorded,
        and ``end_event`` must have completed.

        torch.Event.elapsed_time accepts only exact torch.Event arguments, so
        the subclass asks the runtime directly.
        """
        return _C._event_elapsed_time(self.event_id, end_event.event_id)

    @property
    def sunrise_event(self) -> int:
        """The runtime's event handle (an ``srEvent_t``) as an int; 0 until recorded."""
        return self.event_id

    def __repr__(self) -> str:
        if self.event_id:
            return f"<torch.sunrise.Event {self.event_id:#x} device={self.device}>"
        return "<torch.sunrise.Event uninitialized>"


def _wrap(t: tuple[int, int, int]) -> Stream:
    stream_id, device_index, device_type = t
    return Stream(stream_id=stream_id, device_index=device_index, device_type=device_type)


def _stream_from_handle(handle: int) -> Stream:
    """The :class:`Stream` whose native handle (``Stream.sunrise_stream``) is ``handle``."""
    device_type = default_stream(0).device_type
    for device_index in range(_C._device_count()):
        for stream_id in range(_STREAM_IDS_PER_DEVICE):
            if _C._stream_handle(stream_id, device_index) == handle:
                return Stream(stream_id=stream_id, device_index=device_index, device_type=device_type)
    raise ValueError(f"{handle:#x} is not the handle of a sunrise stream")


def current_stream(device: _DeviceLike = None) -> Stream:
    """The current stream of a device (default: the current device) for this thread."""
    return _wrap(_C._current_stream(_index(device)))


def default_stream(device: _DeviceLike = None) -> Stream:
    """The default stream of a device (default: the current device)."""
    return _wrap(_C._default_stream(_index(device)))


def set_stream(stream: Optional[torch.Stream]) -> None:
    """Make ``stream`` the current stream of its device, and its device the
    current device, for this thread (as ``torch.cuda.set_stream``). ``None`` is
    a no-op. The :func:`stream` context manager also restores both on exit."""
    if stream is None:
        return
    if stream.device.type != "sunrise":
        raise ValueError(f"expected a sunrise stream, got a stream on {stream.device}")
    _C._set_device(stream.device_index)
    _C._set_stream(stream.stream_id, stream.device_index)


class StreamContext:
    """Context manager that makes a stream current, as ``torch.cuda.StreamContext``.

    On entry the stream's device becomes the current device and the stream its
    current stream; on exit the previous current stream of that device and the
    previous current device are restored. ``None`` makes it a no-op.
    """

    def __init__(self, stream: Optional[torch.Stream]):
        self.stream = stream
        self.prev_stream: Optional[torch.Stream] = None
        self.prev_device = -1

    def __enter__(self) -> Optional[torch.Stream]:
        if self.stream is None:
            return None
        self.prev_device = _C._exchange_device(self.stream.device_index)
        self.prev_stream = current_stream(self.stream.device_index)
        set_stream(self.stream)
        return self.stream

    def __exit__(self, *args: object) -> None:
        if self.stream is None:
            return
        set_stream(self.prev_stream)
        _C._set_device(self.prev_device)


def stream(stream: Optional[torch.Stream]) -> StreamContext:
    """Context manager selecting a given stream (``None`` is a no-op):
    ``with torch.sunrise.stream(s): ...`` queues the block's device work on ``s``."""
    return StreamContext(stream)
