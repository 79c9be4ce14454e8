"""Dynamo's view of the sunrise device (``torch._dynamo.device_interface``).

Dynamo and Inductor reach a device's runtime only through this interface:
device and stream switching in traced code, device properties for kernel
heuristics (also in compile workers, which must not touch the device), and
synchronization in benchmarks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._dynamo.device_interface import DeviceInterface

import torch_sunrise.sunrise as sunrise

# Recorded in the parent before compile workers fork: a forked child must not
# initialize the device.
_properties_cache: dict[int, Any] = {}


def _index(device: torch.types.Device) -> int:
    if device is None:
        return sunrise.current_device()
    if isinstance(device, int):
        return device
    device = torch.device(device)
    return sunrise.current_device() if device.index is None else device.index


class SunriseInterface(DeviceInterface):
    device = sunrise.device  # type: ignore[assignment]
    Event = sunrise.Event  # type: ignore[assignment]
    Stream = sunrise.Stream  # type: ignore[assignment]

    class Worker:
        @staticmethod
        def set_device(device: int) -> None:
            sunrise.set_device(device)

        @staticmethod
        def current_device() -> int:
            return sunrise.current_device()

        @staticmethod
        def get_device_properties(device: torch.types.Device = None) -> Any:
            index = _index(device)
            if index not in _properties_cache:
                _properties_cache[index] = sunrise.get_device_properties(index)
            return _properties_cache[index]

    current_device = staticmethod(sunrise.current_device)
    set_device = staticmethod(sunrise.set_device)
    device_count = staticmethod(sunrise.device_count)
    is_available = staticmethod(sunrise.is_available)
    stream = staticmethod(sunrise.stream)
    current_stream = staticmethod(sunrise.current_stream)
    set_stream = staticmethod(sunrise.set_stream)
    synchronize = staticmethod(sunrise.synchronize)
    memory_allocated = staticmethod(sunrise.memory_allocated)

    @staticmethod
    def exchange_device(device: int) -> int:
        previous = sunrise.current_device()
        if device >= 0 and device != previous:
            sunrise.set_device(device)
        return previous

    @staticmethod
    def maybe_exchange_device(device: int) -> int:
        return SunriseInterface.exchange_device(device)

    @staticmethod
    def _set_stream_by_id(stream_id: int, device_index: int, device_type: int) -> None:
        sunrise.set_stream(sunrise.Stream(stream_id=stream_id, device_index=device_index, device_type=device_type))

    @staticmethod
    def get_raw_stream(device_idx: int) -> int:
        return sunrise.current_stream(device_idx).sunrise_stream

    @staticmethod
    def get_compute_capability(device: torch.types.Device = None) -> int:
        major, minor = sunrise.get_device_capability(device)
        return major * 10 + minor

    @staticmethod
    def is_bf16_supported(including_emulation: bool = False) -> bool:
        return sunrise.is_bf16_supported(including_emulation)

    @staticmethod
    def is_triton_capable(device: torch.types.Device = None) -> bool:
        # Inductor's kernels for sunrise are C++ (see torch_sunrise.inductor.codegen).
        return False


def register(device_interface_module: Any) -> None:
    """Register :class:`SunriseInterface` for ``"sunrise"`` and each ``"sunrise:N"``, as CUDA's is."""
    device_interface_module.register_interface_for_device("sunrise", SunriseInterface)
    for i in range(sunrise.device_count()):
        device_interface_module.register_interface_for_device(f"sunrise:{i}", SunriseInterface)


get_raw_stream = SunriseInterface.get_raw_stream
