"""Pinned (page-locked) host memory: Tensor.pin_memory()/is_pinned(), the host
allocator's statistics, DataLoader(pin_memory=True), and asynchronous
non_blocking copies that read the pinned buffer later, on the device's stream,
without letting the allocator hand the buffer out again before they ran."""

from __future__ import annotations

import gc
import time

import pytest
import torch
from torch.testing import assert_close
from torch.utils.data import DataLoader, Dataset, TensorDataset

import torch_sunrise

MiB = 1 << 20
N = 1 << 16  # elements of the copied buffers (256 KiB of float32)


def _queue_device_work(seconds: float = 0.25) -> tuple[torch.Tensor, torch.sunrise.Event]:
    """Queues at least ``seconds`` of native device work (memsets of a 64 MiB
    buffer) on the current stream without waiting for it; returns the buffer
    and an event recorded after that work."""
    buf = torch.empty(64 * MiB, dtype=torch.uint8, device="sunrise")
    torch.sunrise.synchronize()
    start = time.perf_counter()
    buf.fill_(1)
    torch.sunrise.synchronize()
    one = max(time.perf_counter() - start, 1e-4)
    for i in range(min(400, int(seconds / one) + 1)):
        buf.fill_(i % 251)
    done = torch.sunrise.Event()
    done.record()
    return buf, done


@pytest.fixture(autouse=True)
def _device_initialized_and_idle():
    # torch.accelerator.empty_host_cache() is a no-op until torch has seen a
    # device tensor (see the report about torch.sunrise._lazy_init).
    torch.empty(0, device="sunrise")
    gc.collect()  # earlier tests' garbage may hold pinned tensors: free it before counting
    gc.disable()
    torch.sunrise.synchronize()
    yield
    gc.enable()
    torch.sunrise.synchronize()


def test_pin_memory_and_is_pinned() -> None:
    c = torch.randn(1000)
    assert not c.is_pinned()
    p = c.pin_memory()
    assert p.is_pinned() and p.untyped_storage().is_pinned()
    assert p.data_ptr() != c.data_ptr()
    assert_close(p, c, rtol=0, atol=0)
    assert torch_sunrise._C._runtime.pointer_type(p.data_ptr()) == "pinned"
    assert torch_sunrise._C._runtime.pointer_type(c.data_ptr()) == "pageable"
    assert p.pin_memory().data_ptr() == p.data_ptr()  # already pinned: the same memory
    e = torch.empty(10, 3, pin_memory=True)
    assert e.is_pinned()
    z = torch.zeros(5, dtype=torch.int64).pin_memory()
    assert z.is_pinned() and z.tolist() == [0] * 5
    # a view of pinned memory is pinned
    assert p[10:20].is_pinned()
    # device tensors are not pinned host memory
    assert not c.to("sunrise").is_pinned()


def test_host_memory_stats_follow_pinned_tensors() -> None:
    torch.accelerator.empty_host_cache()
    base = torch.sunrise.host_memory_stats()
    assert list(base) == sorted(base)
    for key in ("allocations.current", "allocated_bytes.current", "active_requests.current",
                "active_bytes.current", "num_host_alloc", "num_host_free"):
        assert key in base, key
    nested = torch.sunrise.host_memory_stats_as_nested_dict()
    assert nested["active_requests"]["current"] == base["active_requests.current"]

    p = torch.empty(3 * MiB, dtype=torch.uint8).pin_memory()  # a 4 MiB (power of two) block
    s = torch.sunrise.host_memory_stats()
    assert s["active_requests.current"] == base["active_requests.current"] + 1
    assert s["active_bytes.current"] == base["active_bytes.current"] + 4 * MiB
    assert s["allocated_bytes.current"] >= base["allocated_bytes.current"] + 4 * MiB
    assert s["num_host_alloc"] >= base["num_host_alloc"] + 1

    ptr = p.data_ptr()
    del p
    s = torch.sunrise.host_memory_stats()
    assert s["active_requests.current"] == base["active_requests.current"]  # given back...
    assert s["allocated_bytes.current"] >= base["allocated_bytes.current"] + 4 * MiB  # ...and cached
    q = torch.empty(3 * MiB + 5, dtype=torch.uint8).pin_memory()  # same size class: the cached block
    assert q.data_ptr() == ptr
    assert torch.sunrise.host_memory_stats()["num_host_alloc"] == s["num_host_alloc"]
    del q
    torch.accelerator.empty_host_cache()
    s = torch.sunrise.host_memory_stats()
    assert s["allocated_bytes.current"] == base["allocated_bytes.current"]  # the block went back
    assert s["num_host_free"] >= base["num_host_free"] + 1


class _DictDataset(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_pin_memory_batches_copy_to_device(num_workers: int) -> None:
    ds = TensorDataset(torch.randn(100, 8), torch.arange(100))
    loader = DataLoader(ds, batch_size=16, pin_memory=True, num_workers=num_workers)
    seen = 0
    on_device = []
    for x, y in loader:
        assert x.is_pinned() and y.is_pinned()
        on_device.append((x.to("sunrise", non_blocking=True), y.to("sunrise", non_blocking=True), x, y))
        seen += len(x)
    assert seen == 100
    torch.sunrise.synchronize()
    for xd, yd, x, y in on_device:
        assert xd.is_sunrise and yd.is_sunrise
        assert_close(xd.cpu(), x, rtol=0, atol=0)
        assert_close(yd.cpu(), y, rtol=0, atol=0)
    assert_close(torch.cat([b[0].cpu() for b in on_device]), ds.tensors[0], rtol=0, atol=0)

    # nested batches (dicts) are pinned too
    dict_loader = DataLoader(_DictDataset(40), batch_size=8, pin_memory=True, num_workers=num_workers)
    for batch in dict_loader:
        assert batch["x"].is_pinned() and batch["y"].is_pinned()
        xd = batch["x"].to("sunrise", non_blocking=True)
        assert_close(xd.cpu(), batch["x"], rtol=0, atol=0)


def test_non_blocking_copy_from_pinned_memory_is_asynchronous() -> None:
    src = torch.arange(N, dtype=torch.float32)
    for attempt in range(3):  # more queued work if the machine drained it too fast
        buf, before_copy = _queue_device_work(0.25 * 2**attempt)
        pinned = src.pin_memory()
        d = torch.empty(N, device="sunrise")
        t0 = time.perf_counter()
        d.copy_(pinned, non_blocking=True)
        returned_after = time.perf_counter() - t0
        # Overwrite the source after the call returned. If the work queued before
        # the copy is *still* pending afterwards, the copy had not started when we
        # wrote (the stream runs in order), so it must deliver the new values.
        pinned.fill_(-7.0)
        if not before_copy.query():
            assert not torch.sunrise.current_stream().query()
            break
        torch.sunrise.synchronize()
    else:
        pytest.fail("could not observe a pending non_blocking copy: the device drained 1.75 s of work at once")
    torch.sunrise.synchronize()
    assert torch.sunrise.current_stream().query()
    assert_close(d.cpu(), torch.full((N,), -7.0), rtol=0, atol=0)
    assert returned_after < 0.25
    del buf

    # A blocking copy from pinned memory waits for the queued work and the copy.
    buf, _ = _queue_device_work(0.1)
    e = torch.empty(N, device="sunrise")
    e.copy_(src.pin_memory(), non_blocking=False)
    assert torch.sunrise.current_stream().query()
    assert_close(e.cpu(), src, rtol=0, atol=0)


def test_non_blocking_copy_to_the_host_lands_in_pinned_memory() -> None:
    src = torch.randn(N)
    d = src.to("sunrise")
    buf, _ = _queue_device_work(0.1)
    h = d.to("cpu", non_blocking=True)
    assert h.is_pinned()  # as with CUDA, a non_blocking device-to-host copy allocates pinned memory
    torch.sunrise.synchronize()
    assert_close(h, src, rtol=0, atol=0)


def test_pinned_source_freed_during_a_pending_copy_is_not_reused() -> None:
    torch.accelerator.empty_host_cache()
    src = torch.randn(N)
    size = src.numel() * src.element_size()
    for attempt in range(3):
        buf, before_copy = _queue_device_work(0.25 * 2**attempt)
        pinned = src.pin_memory()
        ptr = pinned.data_ptr()
        d = torch.empty(N, device="sunrise")
        d.copy_(pinned, non_blocking=True)
        active = torch.sunrise.host_memory_stats()["active_requests.current"]
        del pinned  # the copy has not run yet
        # The block stays checked out until the copy's event completes...
        assert torch.sunrise.host_memory_stats()["active_requests.current"] == active
        # ...so new pinned buffers of the same size get other memory,
        other = torch.empty(N).pin_memory()
        also = torch.full((N,), -1.0).pin_memory()
        other.fill_(123.0)  # and writing to them cannot corrupt the pending copy.
        if not before_copy.query():  # the copy was still pending through all of the above
            assert other.data_ptr() != ptr and also.data_ptr() != ptr
            break
        torch.sunrise.synchronize()
        del other, also
    else:
        pytest.fail("could not observe a pending non_blocking copy")
    torch.sunrise.synchronize()
    assert_close(d.cpu(), src, rtol=0, atol=0)
    # After the copy ran, the block is free for reuse (it was not leaked).
    again = torch.empty(size, dtype=torch.uint8).pin_memory()
    assert again.data_ptr() == ptr
    del other, also, again, buf


def test_pinned_memory_on_a_side_stream_and_device_1() -> None:
    src = torch.randn(N)
    pinned = src.pin_memory()
    side = torch.sunrise.Stream()
    with torch.sunrise.stream(side):
        d0 = torch.empty(N, device="sunrise")
        d0.copy_(pinned, non_blocking=True)
    torch.sunrise.current_stream().wait_stream(side)
    assert_close(d0.cpu(), src, rtol=0, atol=0)
    if torch.sunrise.device_count() > 1:
        d1 = pinned.to("sunrise:1", non_blocking=True)
        torch.sunrise.synchronize(1)
        assert d1.device == torch.device("sunrise", 1)
        assert_close(d1.cpu(), src, rtol=0, atol=0)
