"""Streams for sunrise devices, mirroring ``torch.cuda.current_stream`` and friends.

Streams are generic ``torch.Stream`` objects of device type sunrise; the
device's guard implementation gives them their behaviour (query, synchronize,
wait_stream, events).
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .. import _C

__all__ = ["Event", "Stream", "StreamContext", "current_stream", "default_stream", "set_stream", "stream"]

_DeviceLike = Union[torch.device, str, int, None]


def _index(device: _DeviceLike) -> int:
    from . import _device_index

    return _device_index(device)


class Stream(torch.Stream):
    """A sunrise stream: an in-order queue of device work, as ``torch.cuda.Stream``.

    Args:
        device: the device (default: the current one).
        priority: 0 (normal) or negative (high); lower runs first, as in CUDA.
    """

    def __new__(cls, device: _DeviceLike = None, priority: int = 0, **kwargs):
        if "stream_id" in kwargs:  # wrapping an existing stream
            return super().__new__(cls, **kwargs)
        return super().__new__(cls, device=torch.device("sunrise", _index(device)), priority=priority)

    @property
    def sunrise_stream(self) -> int:
        """The runtime's stream handle (an ``srStream_t``) as an int."""
        return _C._stream_handle(self.stream_id, self.device_index)


class Event(torch.Event):
    """A sunrise event, as ``torch.cuda.Event``: marks a point in a stream.

    Args:
        enable_timing: record device timestamps for ``elapsed_time``.
        blocking: ``synchronize`` sleeps instead of spinning.
        interprocess: unsupported on the emulated device (must be False).
    """

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        if interprocess:
            raise ValueError("sunrise events cannot be shared between processes")
        return super().__new__(cls, device="sunrise", enable_timing=enable_timing, blocking=blocking)

    def elapsed_time(self, end_event: torch.Event) -> float:
        """Milliseconds between this event and ``end_event`` (device clock).

        torch.Event.elapsed_time accepts only exact torch.Event arguments, so
        the subclass asks the runtime directly.
        """
        return _C._event_elapsed_time(self.event_id, end_event.event_id)


def _wrap(t: tuple[int, int, int]) -> Stream:
    stream_id, device_index, device_type = t
    return Stream(stream_id=stream_id, device_index=device_index, device_type=device_type)


def current_stream(device: _DeviceLike = None) -> Stream:
    """The current stream of a device for this thread."""
    return _wrap(_C._current_stream(_index(device)))


def default_stream(device: _DeviceLike = None) -> Stream:
    """The default stream of a device."""
    return _wrap(_C._default_stream(_index(device)))


def set_stream(stream: torch.Stream) -> None:
    """Make ``stream`` the current stream of its device for this thread."""
    if stream is None:
        return
    _C._set_stream(stream.stream_id, stream.device_index)


class StreamContext:
    """Context manager that makes a stream current on its device (and the
    device current), restoring both on exit."""

    def __init__(self, stream: Optional[torch.Stream]):
        self.stream = stream
        self.prev_stream: Optional[torch.Stream] = None
        self.prev_device = -1

    def __enter__(self) -> None:
        if self.stream is None:
            return
        self.prev_device = _C._exchange_device(self.stream.device_index)
        self.prev_stream = current_stream(self.stream.device_index)
        set_stream(self.stream)

    def __exit__(self, *args: object) -> None:
        if self.stream is None:
            return
        set_stream(self.prev_stream)
        _C._set_device(self.prev_device)


def stream(stream: Optional[torch.Stream]) -> StreamContext:
    """Context manager selecting a given stream (``None`` is a no-op)."""
    return StreamContext(stream)
