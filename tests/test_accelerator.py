"""torch.accelerator, PyTorch's device-generic API, drives the sunrise device."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise  # noqa: F401


def test_identity_and_devices() -> None:
    assert torch.accelerator.is_available()
    assert torch.accelerator.current_accelerator() == torch.device("sunrise")
    assert torch.accelerator.device_count() == torch.sunrise.device_count() == 2
    torch.accelerator.set_device_index(1)
    try:
        assert torch.accelerator.current_device_index() == 1 == torch.sunrise.current_device()
    finally:
        torch.accelerator.set_device_index(0)
    with torch.accelerator.device_index(1):
        assert torch.sunrise.current_device() == 1
        x = torch.ones(2, device="sunrise")
    assert x.device == torch.device("sunrise", 1)
    assert torch.sunrise.current_device() == 0


def test_streams_and_synchronize() -> None:
    s = torch.Stream(device="sunrise")
    prev = torch.accelerator.current_stream()
    torch.accelerator.set_stream(s)
    try:
        assert torch.accelerator.current_stream() == s
        y = torch.arange(1000.0, device="sunrise") * 2
    finally:
        torch.accelerator.set_stream(prev)
    torch.accelerator.synchronize()
    assert s.query()
    assert_close(y.cpu(), torch.arange(1000.0) * 2)


def test_memory_functions_agree_with_torch_sunrise() -> None:
    torch.accelerator.empty_cache()
    x = torch.empty(3 << 20, dtype=torch.uint8, device="sunrise:1")
    assert torch.accelerator.memory_allocated(1) == torch.sunrise.memory_allocated(1) >= 3 << 20
    assert torch.accelerator.memory_reserved(1) == torch.sunrise.memory_reserved(1)
    assert torch.accelerator.max_memory_allocated(1) == torch.sunrise.max_memory_allocated(1)
    assert torch.accelerator.max_memory_reserved(1) == torch.sunrise.max_memory_reserved(1)
    assert torch.accelerator.memory_stats(1)["allocated_bytes.all.current"] == torch.sunrise.memory_allocated(1)
    assert torch.accelerator.get_memory_info(1) == torch.sunrise.mem_get_info(1)
    del x
    torch.accelerator.reset_peak_memory_stats(1)
    assert torch.accelerator.max_memory_allocated(1) == torch.sunrise.memory_allocated(1)
    torch.accelerator.reset_accumulated_memory_stats(1)
    assert torch.accelerator.memory_stats(1)["allocated_bytes.all.allocated"] == 0
    torch.accelerator.empty_host_cache()


def test_device_capability_lists_supported_dtypes() -> None:
    dtypes = torch.accelerator.get_device_capability("sunrise:0")["supported_dtypes"]
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool, torch.complex64):
        assert dtype in dtypes
    assert torch.qint8 not in dtypes
    with pytest.raises(torch.AcceleratorError):
        torch.accelerator.get_device_capability("sunrise:7")

