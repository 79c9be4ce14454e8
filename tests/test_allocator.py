"""The caching device allocator: accounting, caching, streams, OOM."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest
import torch

import torch_sunrise  # noqa: F401
from conftest import describe

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _clean_cache():
    # Device tensors of earlier tests kept alive by reference cycles (a pytest.raises traceback
    # refers to the frame that refers to it) would hold segments these tests count.
    gc.collect()
    torch.sunrise.synchronize(0)
    torch.sunrise.empty_cache()
    yield
    torch.sunrise.synchronize(0)
    torch.sunrise.empty_cache()


def test_allocated_bytes_follow_tensors() -> None:
    base = torch.sunrise.memory_allocated(0)
    x = torch.empty(1000, 1000, device="sunrise:0")  # 4,000,000 bytes, rounded to 512
    assert torch.sunrise.memory_allocated(0) - base == 4_000_256
    assert torch.sunrise.memory_reserved(0) >= torch.sunrise.memory_allocated(0)
    del x
    assert torch.sunrise.memory_allocated(0) == base


def test_freed_blocks_are_cached_and_reused() -> None:
    x = torch.empty(4 * MiB, dtype=torch.uint8, device="sunrise:0")
    ptr = x.data_ptr()
    reserved = torch.sunrise.memory_reserved(0)
    del x
    assert torch.sunrise.memory_reserved(0) == reserved  # cached, not returned
    y = torch.empty(4 * MiB, dtype=torch.uint8, device="sunrise:0")
    assert y.data_ptr() == ptr
    stats = torch.sunrise.memory_stats(0)
    assert stats["num_device_alloc"] >= 1
    del y
    torch.sunrise.empty_cache()
    assert torch.sunrise.memory_reserved(0) == 0


def test_small_blocks_share_segments_and_merge_back() -> None:
    xs = [torch.empty(1000, device="sunrise:0") for _ in range(100)]
    stats = torch.sunrise.memory_stats(0)
    assert stats["segment.small_pool.current"] == 1
    assert stats["allocation.small_pool.current"] == 100
    del xs
    stats = torch.sunrise.memory_stats(0)
    assert stats["allocation.small_pool.current"] == 0
    assert stats["inactive_split.small_pool.current"] == 0  # merged into one free segment


def test_stats_use_cuda_keys_and_peaks_reset() -> None:
    x = torch.empty(8 * MiB, dtype=torch.uint8, device="sunrise:0")
    del x
    stats = torch.sunrise.memory_stats(0)
    for key in ("allocated_bytes.all.current", "allocated_bytes.all.peak", "reserved_bytes.large_pool.current",
                "active_bytes.all.current", "requested_bytes.all.allocated", "num_ooms", "num_alloc_retries"):
        assert key in stats
    assert torch.sunrise.max_memory_allocated(0) >= 8 * MiB
    torch.sunrise.reset_peak_memory_stats(0)
    assert torch.sunrise.max_memory_allocated(0) == torch.sunrise.memory_allocated(0)
    torch.sunrise.reset_accumulated_memory_stats(0)
    assert torch.sunrise.memory_stats(0)["allocated_bytes.all.allocated"] == 0


def test_accelerator_memory_api_sees_the_allocator() -> None:
    x = torch.empty(MiB, dtype=torch.uint8, device="sunrise:0")
    assert torch.accelerator.memory_allocated(0) == torch.sunrise.memory_allocated(0)
    assert torch.accelerator.memory_reserved(0) == torch.sunrise.memory_reserved(0)
    del x


def test_devices_are_accounted_separately() -> None:
    before = torch.sunrise.memory_allocated(1)
    x = torch.empty(MiB, dtype=torch.uint8, device="sunrise:0")
    assert torch.sunrise.memory_allocated(1) == before
    y = x.to("sunrise:1")
    assert torch.sunrise.memory_allocated(1) == before + MiB
    del x, y


def test_mem_get_info_reflects_reserved_memory() -> None:
    free0, total = torch.sunrise.mem_get_info(0)
    assert total == torch.sunrise.get_device_properties(0).total_memory
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="sunrise:0")
    free1, _ = torch.sunrise.mem_get_info(0)
    assert free0 - free1 >= 64 * MiB
    del x


def test_huge_single_allocation_is_lazy() -> None:
    # HuggingFace warms its allocator with one model-sized torch.empty.
    n = torch.sunrise.get_device_properties(0).total_memory // 4
    x = torch.empty(n, dtype=torch.uint8, device="sunrise:0")
    x[:16].fill_(7)
    assert x[:16].cpu().tolist() == [7] * 16
    del x


def test_record_stream_delays_reuse_until_the_other_stream_passes() -> None:
    side = torch.Stream(device="sunrise:0")
    x = torch.empty(MiB, dtype=torch.uint8, device="sunrise:0")
    ptr = x.data_ptr()
    x.record_stream(side)
    del x
    stats = torch.sunrise.memory_stats(0)
    # The block waits for an event on `side` before it can be handed out again.
    assert stats["active_bytes.all.current"] >= MiB or side.query()
    side.synchronize()
    y = torch.empty(MiB, dtype=torch.uint8, device="sunrise:0")
    assert y.data_ptr() == ptr


def test_memory_fraction_caps_reservations() -> None:
    total = torch.sunrise.get_device_properties(1).total_memory
    torch.sunrise.set_per_process_memory_fraction(64 * MiB / total, 1)
    try:
        with pytest.raises(torch.OutOfMemoryError, match="set_per_process_memory_fraction"):
            torch.empty(128 * MiB, dtype=torch.uint8, device="sunrise:1")
        torch.empty(16 * MiB, dtype=torch.uint8, device="sunrise:1")
    finally:
        torch.sunrise.set_per_process_memory_fraction(1.0, 1)
    with pytest.raises(ValueError):
        torch.sunrise.set_per_process_memory_fraction(1.5, 1)


def test_snapshot_lists_segments_and_blocks() -> None:
    x = torch.empty(3 * MiB, dtype=torch.uint8, device="sunrise:0")
    segments = [s for s in torch.sunrise.memory_snapshot() if s["device"] == 0]
    assert segments
    blocks = [b for s in segments for b in s["blocks"] if b["state"] == "active_allocated"]
    assert any(b["address"] == x.data_ptr() for b in blocks)
    for s in segments:
        assert sum(b["size"] for b in s["blocks"]) == s["total_size"]
    del x


def test_oom_message_and_recovery_in_a_fresh_process() -> None:
    script = textwrap.dedent(
        """
        import gc
        import torch
        try:
            torch.empty(512 * 2**20, dtype=torch.uint8, device="sunrise")
        except torch.OutOfMemoryError as e:
            msg = str(e)
            assert "Tried to allocate 512.00 MiB" in msg, msg
            assert "total capacity of 256.00 MiB" in msg, msg
            assert "reserved by PyTorch" in msg and "SUNRISE_DEVICE_MEMORY" in msg, msg
        else:
            raise SystemExit("no OutOfMemoryError")
        keep = [torch.ones(32 * 2**20, dtype=torch.uint8, device="sunrise") for _ in range(5)]
        try:
            more = [torch.ones(32 * 2**20, dtype=torch.uint8, device="sunrise") for _ in range(10)]
        except torch.OutOfMemoryError:
            pass
        else:
            raise SystemExit("capacity not enforced")
        del keep
        gc.collect()  # the failed comprehension's partial list sits in a traceback cycle
        # Cached blocks are released and the device is usable again.
        x = torch.ones(200 * 2**20, dtype=torch.uint8, device="sunrise")
        assert int(x[-1].item()) == 1
        assert torch.sunrise.memory_stats()["num_ooms"] == 2
        print("ok")
        """
    )
    env = {"SUNRISE_DEVICE_MEMORY": "256MiB", "SUNRISE_FALLBACK": "silent", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")


def test_freed_memory_is_reused_in_stream_order_while_work_is_queued(run_python) -> None:
    # As on CUDA, queued work does not keep its operands' memory: a block the
    # host frees is handed to the next allocation on the same stream at once,
    # which stream order runs after the work that used it. A host issuing
    # 4 MiB temporaries far ahead of the device (queue bound lifted) therefore
    # reuses one block instead of reserving one per queued launch.
    code = """
        import torch, torch_sunrise
        x = torch.randn(1 << 20, device="sunrise")
        w = torch.randn(1024, 1024, device="sunrise")
        torch.sunrise.synchronize()
        torch.sunrise.reset_peak_memory_stats()
        ys = []
        for i in range(300):
            w @ w          # slow device work, so the host runs ahead
            y = x * 2.0    # a 4 MiB temporary, dropped at once on the host
            if i % 50 == 0:
                ys.append(y)
        torch.sunrise.synchronize()
        assert all(torch.equal(y.cpu(), x.cpu() * 2.0) for y in ys)
        print(torch.sunrise.max_memory_allocated() / 2**20)
    """
    proc = run_python(code, env={"SUNRISE_MAX_QUEUED": "1000000"})
    assert proc.returncode == 0, describe(proc)
    peak_mib = float(proc.stdout.split()[-1])
    # x, w, the kept ys, a temporary and a matmul result: ~40 MiB; one block per
    # queued launch would be over a GiB.
    assert peak_mib < 64, f"peak {peak_mib:.0f} MiB: freed blocks were not reused while work was queued"


def test_launch_queue_depth_setting_is_validated(run_python) -> None:
    bad = run_python("import torch, torch_sunrise; torch.randn(2, device='sunrise')",
                     env={"SUNRISE_MAX_QUEUED": "lots"})
    assert bad.returncode != 0 and "SUNRISE_MAX_QUEUED" in bad.stderr, describe(bad)


def test_work_on_another_stream_keeps_a_freed_block_from_reuse() -> None:
    # The block of `a` is read by work queued on `side` behind slow matmuls;
    # the host frees `a` and allocates and overwrites a same-sized tensor on
    # the default stream at once. Launches record the use on `side` (as
    # Tensor.record_stream would), so the new tensor gets another block until
    # `side` has read `a`.
    side = torch.sunrise.Stream()
    # The first float32 `x * 2` waits for its kernel (to raise a dtype error at the call); this
    # one must not wait for `side`.
    torch.ones(1, device="sunrise") * 2
    w = torch.randn(1024, 1024, device="sunrise")
    a_cpu = torch.randn(MiB // 4)
    a = a_cpu.to("sunrise")
    side.wait_stream(torch.sunrise.current_stream())
    with torch.sunrise.stream(side):
        for _ in range(8):
            w = w @ w / 1024
        b = a * 2
    ptr = a.data_ptr()
    del a
    c = torch.full((MiB // 4,), 5.0, device="sunrise")
    assert c.data_ptr() != ptr
    torch.sunrise.synchronize()
    torch.testing.assert_close(b.cpu(), a_cpu * 2, rtol=0, atol=0)
    assert torch.equal(c.cpu(), torch.full((MiB // 4,), 5.0))
