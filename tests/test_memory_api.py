"""The torch.sunrise memory API users read: memory_summary, every statistic
function (and its torch.accelerator twin), memory_snapshot, the per-process
fraction and out-of-memory errors, raw caching_allocator_alloc/delete, huge
allocations, and memory going back to its baseline after a model is deleted."""

from __future__ import annotations

import gc
import re
import warnings

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise

MiB = 1 << 20
_UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


@pytest.fixture(autouse=True)
def _clean_cache():
    # Exact accounting: collect earlier tests' garbage (which may hold device
    # tensors) now, and keep the cycle collector from freeing some mid-test.
    gc.collect()
    gc.disable()
    for d in range(torch.sunrise.device_count()):
        torch.sunrise.synchronize(d)
    torch.sunrise.empty_cache()
    yield
    gc.enable()
    gc.collect()
    for d in range(torch.sunrise.device_count()):
        torch.sunrise.synchronize(d)
    torch.sunrise.empty_cache()


def _summary_rows(summary: str) -> dict[str, list[list[str]]]:
    """``{row label: [cells of each line with that label]}`` of a memory_summary table."""
    rows: dict[str, list[list[str]]] = {}
    for line in summary.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) == 5:
            rows.setdefault(parts[0], []).append(parts[1:])
    return rows


def _cell_bytes(cell: str) -> tuple[float, int]:
    """``"3.50 MiB"`` -> (3.5 * 2**20, 2**20)."""
    m = re.fullmatch(r"([0-9.]+) (B|KiB|MiB|GiB|TiB)", cell)
    assert m, f"not a size cell: {cell!r}"
    return float(m.group(1)) * _UNIT[m.group(2)], _UNIT[m.group(2)]


def _assert_size_cell(cell: str, expected: int) -> None:
    value, unit = _cell_bytes(cell)
    # two decimals of the unit: off by at most half a hundredth of it
    assert abs(value - expected) <= 0.005 * unit + 1e-9, f"{cell!r} != {expected} bytes"


# --------------------------------------------------------------------------
# memory_summary


def test_memory_summary_reports_the_allocator_numbers() -> None:
    torch.sunrise.reset_accumulated_memory_stats(0)
    torch.sunrise.reset_peak_memory_stats(0)
    base = torch.sunrise.memory_stats(0)
    big = torch.empty(5 * MiB, dtype=torch.uint8, device="sunrise:0")  # large pool, exactly 5 MiB
    smalls = [torch.empty(1000, device="sunrise:0") for _ in range(3)]  # 3 x 4000 B -> 3 x 4096 B
    stats = torch.sunrise.memory_stats(0)
    assert stats["allocated_bytes.all.current"] - base["allocated_bytes.all.current"] == 5 * MiB + 3 * 4096

    summary = torch.sunrise.memory_summary(0)
    assert isinstance(summary, str)
    assert "sunrise:0" in summary
    rows = _summary_rows(summary)
    assert rows["Metric"] == [["Cur Usage", "Peak Usage", "Tot Alloc", "Tot Freed"]]
    allocated_row, large_row, small_row = rows["Allocated memory"][0], rows["from large pool"][0], rows["from small pool"][0]
    for cell, metric in zip(allocated_row, ("current", "peak", "allocated", "freed")):
        _assert_size_cell(cell, stats[f"allocated_bytes.all.{metric}"])
    _assert_size_cell(large_row[0], stats["allocated_bytes.large_pool.current"])
    _assert_size_cell(small_row[0], stats["allocated_bytes.small_pool.current"])
    _assert_size_cell(rows["Device reserved memory"][0][0], stats["reserved_bytes.all.current"])
    _assert_size_cell(rows["Active memory"][0][0], stats["active_bytes.all.current"])
    _assert_size_cell(rows["Requested memory"][0][0], stats["requested_bytes.all.current"])
    _assert_size_cell(rows["Non-releasable memory"][0][0], stats["inactive_split_bytes.all.current"])
    # count rows are exact
    for label, key in (("Allocations", "allocation"), ("Active allocs", "active"),
                       ("Device reserved segments", "segment"), ("Non-releasable allocs", "inactive_split")):
        assert [int(c) for c in rows[label][0]] == [
            stats[f"{key}.all.{m}"] for m in ("current", "peak", "allocated", "freed")
        ], label
    assert int(rows["Allocations"][0][2]) == 4  # accumulated counters were reset before the 4 allocations
    assert int(rows["Oversize allocations"][0][0]) == stats["oversize_allocations.current"]
    assert int(rows["Oversize device segments"][0][0]) == stats["oversize_segments.current"]

    del big, smalls
    after = _summary_rows(torch.sunrise.memory_summary("sunrise:0"))
    _assert_size_cell(after["Allocated memory"][0][0], base["allocated_bytes.all.current"])
    _assert_size_cell(after["Allocated memory"][0][1], stats["allocated_bytes.all.peak"])  # the peak stays
    _assert_size_cell(after["Allocated memory"][0][3], 5 * MiB + 3 * 4096)  # freed since the reset


def test_memory_summary_abbreviated_and_device_forms() -> None:
    full = torch.sunrise.memory_summary()
    short = torch.sunrise.memory_summary(abbreviated=True)
    assert "from large pool" in full and "from small pool" in full
    assert "from large pool" not in short and "from small pool" not in short
    assert len(short.splitlines()) < len(full.splitlines())
    for label in ("Allocated memory", "Active memory", "Requested memory", "Device reserved memory",
                  "Non-releasable memory", "Allocations", "Active allocs", "Device reserved segments",
                  "Non-releasable allocs", "Oversize allocations", "Oversize device segments"):
        assert label in short, label
    # every line of the table has the same width
    assert len({len(line) for line in full.splitlines()}) == 1


@pytest.mark.two_devices
def test_memory_summary_of_device_1() -> None:
    x = torch.empty(3 * MiB, dtype=torch.uint8, device="sunrise:1")
    stats1 = torch.sunrise.memory_stats(1)
    for device in (1, "sunrise:1", torch.device("sunrise", 1)):
        summary = torch.sunrise.memory_summary(device)
        assert "sunrise:1" in summary
        _assert_size_cell(_summary_rows(summary)["Allocated memory"][0][0], stats1["allocated_bytes.all.current"])
    with torch.sunrise.device(1):
        assert "sunrise:1" in torch.sunrise.memory_summary()
    del x


# --------------------------------------------------------------------------
# statistic functions


def test_every_statistic_function() -> None:
    torch.sunrise.reset_peak_memory_stats(0)
    alloc0 = torch.sunrise.memory_allocated(0)
    reserved0 = torch.sunrise.memory_reserved(0)
    x = torch.empty(4 * MiB, dtype=torch.uint8, device="sunrise:0")
    assert torch.sunrise.memory_allocated(0) == alloc0 + 4 * MiB
    assert torch.sunrise.memory_allocated() == torch.sunrise.memory_allocated("sunrise:0")
    assert torch.sunrise.memory_allocated(torch.device("sunrise:0")) == alloc0 + 4 * MiB
    assert torch.sunrise.max_memory_allocated(0) == alloc0 + 4 * MiB
    assert torch.sunrise.memory_reserved(0) >= reserved0 + 4 * MiB
    assert torch.sunrise.max_memory_reserved(0) >= torch.sunrise.memory_reserved(0)
    with pytest.warns(FutureWarning):
        assert torch.sunrise.memory_cached(0) == torch.sunrise.memory_reserved(0)
    with pytest.warns(FutureWarning):
        assert torch.sunrise.max_memory_cached(0) == torch.sunrise.max_memory_reserved(0)

    nested = torch.sunrise.memory_stats_as_nested_dict(0)
    flat = torch.sunrise.memory_stats(0)
    assert list(flat) == sorted(flat)
    assert nested["allocated_bytes"]["all"]["current"] == flat["allocated_bytes.all.current"]
    assert nested["segment"]["large_pool"]["peak"] == flat["segment.large_pool.peak"]
    assert nested["num_device_alloc"] == flat["num_device_alloc"]
    for key, value in flat.items():
        if key.endswith((".all.current", ".all.peak")):
            pool = key.replace(".all.", ".large_pool."), key.replace(".all.", ".small_pool.")
            if key.endswith(".current"):
                assert value == flat[pool[0]] + flat[pool[1]], key

    del x
    assert torch.sunrise.memory_allocated(0) == alloc0
    assert torch.sunrise.max_memory_allocated(0) == alloc0 + 4 * MiB  # peak remembered
    with pytest.warns(FutureWarning):
        torch.sunrise.reset_max_memory_allocated(0)
    assert torch.sunrise.max_memory_allocated(0) == alloc0
    y = torch.empty(2 * MiB, dtype=torch.uint8, device="sunrise:0")
    del y
    with pytest.warns(FutureWarning):
        torch.sunrise.reset_max_memory_cached("sunrise:0")
    assert torch.sunrise.max_memory_allocated(0) == alloc0
    assert torch.sunrise.max_memory_reserved(0) == torch.sunrise.memory_reserved(0)

    assert torch.sunrise.memory_stats(0)["allocated_bytes.all.freed"] > 0
    torch.sunrise.reset_accumulated_memory_stats(0)
    stats = torch.sunrise.memory_stats(0)
    assert stats["allocated_bytes.all.freed"] == 0 and stats["allocated_bytes.all.allocated"] == 0
    assert stats["allocation.all.allocated"] == 0

    # empty_cache returns the free segments, mem_get_info sees it
    z = torch.empty(32 * MiB, dtype=torch.uint8, device="sunrise:0")
    del z
    cached = torch.sunrise.memory_reserved(0)
    free_before, total = torch.sunrise.mem_get_info(0)
    torch.sunrise.empty_cache()
    assert torch.sunrise.memory_reserved(0) <= cached - 32 * MiB
    free_after, total_after = torch.sunrise.mem_get_info(0)
    assert total_after == total == torch.sunrise.get_device_properties(0).total_memory
    assert free_after - free_before >= 32 * MiB


def test_statistic_functions_reject_other_devices() -> None:
    with pytest.raises(ValueError):
        torch.sunrise.memory_allocated("cpu")
    with pytest.raises((IndexError, RuntimeError)):
        torch.sunrise.memory_stats(torch.sunrise.device_count())


@pytest.mark.parametrize("index", [0, pytest.param(1, marks=pytest.mark.two_devices)])
def test_accelerator_memory_functions_equal_sunrise(index: int) -> None:
    x = torch.empty(3 * MiB, dtype=torch.uint8, device=f"sunrise:{index}")
    y = torch.empty(1000, device=f"sunrise:{index}")
    torch.sunrise.synchronize(index)
    assert dict(torch.accelerator.memory_stats(index)) == dict(torch.sunrise.memory_stats(index))
    assert torch.accelerator.memory_allocated(index) == torch.sunrise.memory_allocated(index)
    assert torch.accelerator.max_memory_allocated(index) == torch.sunrise.max_memory_allocated(index)
    assert torch.accelerator.memory_reserved(index) == torch.sunrise.memory_reserved(index)
    assert torch.accelerator.max_memory_reserved(index) == torch.sunrise.max_memory_reserved(index)
    assert torch.accelerator.get_memory_info(index) == torch.sunrise.mem_get_info(index)
    assert torch.sunrise.memory_allocated(index) >= 3 * MiB + 4096

    del x
    # resets through torch.accelerator are seen by torch.sunrise
    torch.accelerator.reset_peak_memory_stats(index)
    assert torch.sunrise.max_memory_allocated(index) == torch.sunrise.memory_allocated(index)
    torch.accelerator.reset_accumulated_memory_stats(index)
    assert torch.sunrise.memory_stats(index)["allocated_bytes.all.freed"] == 0
    reserved = torch.sunrise.memory_reserved(index)
    torch.accelerator.empty_cache()
    assert torch.sunrise.memory_reserved(index) < reserved  # the 20 MiB segment of x went back
    del y


# --------------------------------------------------------------------------
# snapshot


def test_memory_snapshot_is_consistent_with_the_statistics() -> None:
    keep = [
        torch.empty(3 * MiB, dtype=torch.uint8, device="sunrise:0"),
        torch.empty(12 * MiB, dtype=torch.uint8, device="sunrise:0"),
        *[torch.empty(n, device="sunrise:0") for n in (10, 1000, 100_000)],
    ]
    side = torch.sunrise.Stream()
    with torch.sunrise.stream(side):
        keep.append(torch.empty(2000, device="sunrise:0"))
    torch.sunrise.synchronize(0)
    stats = torch.sunrise.memory_stats(0)
    segments = [s for s in torch.sunrise.memory_snapshot() if s["device"] == 0]
    blocks = [b for s in segments for b in s["blocks"]]
    allocated = [b for b in blocks if b["state"] == "active_allocated"]

    assert sum(s["total_size"] for s in segments) == stats["reserved_bytes.all.current"]
    assert sum(b["size"] for b in allocated) == stats["allocated_bytes.all.current"]
    assert sum(s["allocated_size"] for s in segments) == stats["allocated_bytes.all.current"]
    assert sum(b["requested_size"] for b in allocated) == stats["requested_bytes.all.current"]
    assert len(allocated) == stats["allocation.all.current"]
    assert len(segments) == stats["segment.all.current"]
    assert sum(s["segment_type"] == "large" for s in segments) == stats["segment.large_pool.current"]
    assert sum(s["segment_type"] == "small" for s in segments) == stats["segment.small_pool.current"]
    for s in segments:
        assert sum(b["size"] for b in s["blocks"]) == s["total_size"]
        addresses = [b["address"] for b in s["blocks"]]
        assert addresses[0] == s["address"] and addresses == sorted(addresses)
    for t in keep:
        (block,) = [b for b in allocated if b["address"] == t.data_ptr()]
        assert block["size"] >= t.numel() * t.element_size()
        assert block["requested_size"] == t.numel() * t.element_size()
    # the side-stream tensor lives in a segment of that stream
    (seg,) = [s for s in segments if any(b["address"] == keep[-1].data_ptr() for b in s["blocks"])]
    assert seg["stream"] == side.sunrise_stream
    ordinary = torch.sunrise.memory_snapshot(mempool_id=(0, 0))  # the segments of no graph's pool
    assert ordinary and all(tuple(s["segment_pool_id"]) == (0, 0) for s in ordinary)
    assert seg["address"] in {s["address"] for s in ordinary}
    assert torch.sunrise.memory_snapshot(mempool_id=(12345, 0)) == []  # no graph owns such a pool
    del keep


# --------------------------------------------------------------------------
# per-process fraction, out of memory


@pytest.mark.two_devices
def test_memory_fraction_oom_message_and_recovery() -> None:
    total = torch.sunrise.get_device_properties(1).total_memory
    ooms = torch.sunrise.memory_stats(1)["num_ooms"]
    # 40 MiB cached on device 1: the capped allocation must release it and retry
    cached = torch.empty(40 * MiB, dtype=torch.uint8, device="sunrise:1")
    del cached
    assert torch.sunrise.memory_reserved(1) >= 40 * MiB
    torch.sunrise.set_per_process_memory_fraction(64 * MiB / total, 1)
    try:
        with pytest.raises(torch.OutOfMemoryError) as info:
            torch.empty(128 * MiB, dtype=torch.uint8, device="sunrise:1")
        msg = str(info.value)
        assert "Tried to allocate 128.00 MiB" in msg, msg
        assert "sunrise:1" in msg and "set_per_process_memory_fraction" in msg and "64.00 MiB" in msg, msg
        assert "empty_cache" in msg, msg
        assert torch.sunrise.memory_stats(1)["num_ooms"] == ooms + 1
        # recovery: an allocation under the cap works (after the failed one released the cache)
        x = torch.ones(48 * MiB, dtype=torch.uint8, device="sunrise:1")
        assert int(x[-1].item()) == 1
        assert torch.sunrise.memory_reserved(1) <= 64 * MiB
        del x
    finally:
        torch.sunrise.set_per_process_memory_fraction(1.0, 1)
    y = torch.zeros(128 * MiB, dtype=torch.uint8, device="sunrise:1")  # the cap is lifted
    assert int(y[0].item()) == 0
    del y
    with pytest.raises(ValueError):
        torch.sunrise.set_per_process_memory_fraction(1.5, 1)
    with pytest.raises(ValueError):
        torch.sunrise.set_per_process_memory_fraction(-0.1, 1)
    with pytest.raises(TypeError):
        torch.sunrise.set_per_process_memory_fraction("0.5", 1)  # type: ignore[arg-type]


def test_single_huge_allocation_of_a_third_of_the_device() -> None:
    total = torch.sunrise.get_device_properties(0).total_memory
    n = total // 3
    before = torch.sunrise.memory_allocated(0)
    free_before, _ = torch.sunrise.mem_get_info(0)
    x = torch.empty(n, dtype=torch.uint8, device="sunrise:0")
    assert torch.sunrise.memory_allocated(0) - before >= n
    assert free_before - torch.sunrise.mem_get_info(0)[0] >= n
    x[:4096].fill_(3)
    x[-4096:].fill_(5)
    assert x[:4096].cpu().tolist() == [3] * 4096
    assert x[-4096:].cpu().tolist() == [5] * 4096
    del x
    assert torch.sunrise.memory_allocated(0) == before
    torch.sunrise.empty_cache()
    assert torch.sunrise.mem_get_info(0)[0] >= free_before


# --------------------------------------------------------------------------
# raw allocations


def test_caching_allocator_alloc_and_delete() -> None:
    before = torch.sunrise.memory_allocated(0)
    ptr = torch.sunrise.caching_allocator_alloc(MiB + 100)
    assert isinstance(ptr, int) and ptr != 0
    assert torch.sunrise.memory_allocated(0) == before + MiB + 512  # rounded to 512 B
    assert torch_sunrise._C._runtime.pointer_type(ptr) == "device"
    blocks = [b for s in torch.sunrise.memory_snapshot() for b in s["blocks"] if b["address"] == ptr]
    assert [b["state"] for b in blocks] == ["active_allocated"]
    # it is real device memory: write from the host through the runtime, read back
    src = torch.arange(256, dtype=torch.uint8)
    torch_sunrise._C._runtime.memcpy_htod(ptr, src.data_ptr(), 256)
    out = torch.empty(256, dtype=torch.uint8)
    torch_sunrise._C._runtime.memcpy_dtoh(out.data_ptr(), ptr, 256)
    assert_close(out, src, rtol=0, atol=0)
    torch.sunrise.caching_allocator_delete(ptr)
    assert torch.sunrise.memory_allocated(0) == before
    with pytest.raises(RuntimeError, match="invalid device pointer"):
        torch.sunrise.caching_allocator_delete(ptr)
    torch.sunrise.caching_allocator_delete(0)  # no-op, as free(NULL)
    assert torch.sunrise.caching_allocator_alloc(0) == 0


def test_caching_allocator_alloc_on_a_stream_and_device() -> None:
    side = torch.sunrise.Stream()
    for stream in (side, side.sunrise_stream):  # a Stream or its native handle
        ptr = torch.sunrise.caching_allocator_alloc(4096, stream=stream)
        (seg,) = [s for s in torch.sunrise.memory_snapshot() if any(b["address"] == ptr for b in s["blocks"])]
        assert seg["stream"] == side.sunrise_stream
        torch.sunrise.caching_allocator_delete(ptr)
    with pytest.raises(TypeError):
        torch.sunrise.caching_allocator_alloc(16, stream="default")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        torch.sunrise.caching_allocator_alloc(16, stream=12345)
    if torch.sunrise.device_count() > 1:
        before = torch.sunrise.memory_allocated(1)
        ptr = torch.sunrise.caching_allocator_alloc(2 * MiB, device="sunrise:1")
        assert torch.sunrise.memory_allocated(1) == before + 2 * MiB
        assert torch.sunrise.current_device() == 0
        torch.sunrise.caching_allocator_delete(ptr)
        assert torch.sunrise.memory_allocated(1) == before


# --------------------------------------------------------------------------
# memory comes back


def test_memory_returns_to_baseline_after_a_model_is_deleted() -> None:
    gc.collect()
    torch.sunrise.synchronize(0)
    torch.sunrise.empty_cache()
    base_allocated = torch.sunrise.memory_allocated(0)
    base_reserved = torch.sunrise.memory_reserved(0)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).to("sunrise")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(64, 32, device="sunrise")
    y = torch.randint(0, 10, (64,), device="sunrise")
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    assert torch.isfinite(loss).item()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    # weights + grads-or-not + two AdamW moments are on the device
    assert torch.sunrise.memory_allocated(0) - base_allocated >= 3 * params
    assert torch.sunrise.max_memory_allocated(0) > base_allocated

    del model, opt, x, y, loss
    gc.collect()
    torch.sunrise.synchronize(0)
    assert torch.sunrise.memory_allocated(0) == base_allocated
    torch.sunrise.empty_cache()
    assert torch.sunrise.memory_reserved(0) == base_reserved


def test_all_public_memory_functions_are_exported_and_documented() -> None:
    from torch_sunrise.sunrise import memory

    for name in memory.__all__:
        fn = getattr(torch.sunrise, name)
        assert fn.__doc__, name
        assert fn is getattr(memory, name)
    for name in ("memory_summary", "memory_cached", "max_memory_cached", "reset_max_memory_allocated",
                 "reset_max_memory_cached", "caching_allocator_alloc", "caching_allocator_delete"):
        assert name in memory.__all__, name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.sunrise.memory_reserved()  # the non-deprecated spellings do not warn
