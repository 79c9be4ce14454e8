"""Errors: every misuse raises a clear Python exception (never a crash, a hang,
or an error that surfaces later at an unrelated call)."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from torch.testing import assert_close

import torch_sunrise
from conftest import describe, pending_device_errors

rt = torch_sunrise._C._runtime
RUNTIME_ERROR_NAME = r"sr(Error)?\w+"  # srErrorInvalidValue, srErrorInvalidResourceHandle, ...


# ---------------------------------------------------------- device mixing


@pytest.mark.two_devices
@pytest.mark.parametrize(
    "op",
    [
        pytest.param(lambda a, b: a + b, id="add"),
        pytest.param(lambda a, b: torch.matmul(a, b), id="matmul"),
        pytest.param(lambda a, b: torch.cat([a, b]), id="cat"),
        pytest.param(lambda a, b: a.add_(b), id="add_"),
        pytest.param(lambda a, b: torch.sin(a, out=b), id="out"),
        pytest.param(lambda a, b: torch.where(a > 0, a, b), id="where"),
    ],
)
def test_tensors_on_two_devices_in_one_op(op) -> None:
    a = torch.ones(3, 3, device="sunrise:0")
    b = torch.ones(3, 3, device="sunrise:1")
    with pytest.raises(RuntimeError) as info:
        op(a, b)
    message = str(info.value)
    assert "sunrise:0" in message and "sunrise:1" in message, message
    assert_close(a.cpu(), torch.ones(3, 3))  # nothing was modified
    assert_close(b.cpu(), torch.ones(3, 3))


@pytest.mark.parametrize(
    "op",
    [
        pytest.param(lambda d, c: d + c, id="add"),
        pytest.param(lambda d, c: torch.matmul(c, d), id="matmul"),
        pytest.param(lambda d, c: d.mul_(c), id="mul_"),
        pytest.param(lambda d, c: torch.stack([d, c]), id="stack"),
    ],
)
def test_non_scalar_cpu_tensor_with_sunrise_tensor(op) -> None:
    d = torch.ones(3, 3, device="sunrise")
    c = torch.ones(3, 3)
    with pytest.raises(RuntimeError) as info:
        op(d, c)
    message = str(info.value)
    assert "cpu" in message and "sunrise" in message, message
    assert "same device" in message, message


def test_zero_dim_cpu_tensor_with_sunrise_tensor_is_allowed() -> None:
    c = torch.randn(3, 3)
    d = c.sunrise()
    s = torch.tensor(2.5)
    assert_close((d * s).cpu(), c * s)
    assert_close(torch.add(d, s, alpha=2).cpu(), torch.add(c, s, alpha=2))
    assert_close(d.clone().mul_(s).cpu(), c * s)


# ---------------------------------------------------------- device indices


def test_creating_a_tensor_on_a_missing_device() -> None:
    # CUDA's "invalid device ordinal": torch.AcceleratorError, a RuntimeError
    with pytest.raises(torch.AcceleratorError) as info:
        torch.randn(2, device="sunrise:99")
    message = str(info.value)
    assert "99" in message and str(torch.sunrise.device_count()) in message, message
    assert "invalid device ordinal" in message and isinstance(info.value, RuntimeError)
    with pytest.raises(torch.AcceleratorError, match="99"):
        torch.ones(2).to("sunrise:99")
    with pytest.raises(torch.AcceleratorError, match="99"):
        torch.empty(2, device="sunrise:99")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda i: torch.sunrise.set_device(i), id="set_device"),
        pytest.param(lambda i: torch.sunrise.device(i).__enter__(), id="device_ctx"),
        pytest.param(lambda i: torch.sunrise.synchronize(i), id="synchronize"),
        pytest.param(lambda i: torch.sunrise.get_device_properties(i), id="get_device_properties"),
        pytest.param(lambda i: torch.sunrise.current_stream(i), id="current_stream"),
        pytest.param(lambda i: torch.Stream(device=f"sunrise:{i}"), id="Stream"),
        pytest.param(lambda i: torch.Generator(device=f"sunrise:{i}"), id="Generator"),
        pytest.param(lambda i: torch.sunrise.memory_stats(i), id="memory_stats"),
        pytest.param(lambda i: torch.sunrise.get_rng_state(i), id="get_rng_state"),
    ],
)
def test_invalid_device_index(call) -> None:
    with pytest.raises(torch.AcceleratorError) as info:
        call(5)
    message = str(info.value)
    assert "sunrise:5" in message and str(torch.sunrise.device_count()) in message, message
    assert torch.sunrise.current_device() == 0


@pytest.mark.parametrize(
    "call,index",
    [
        pytest.param(lambda i: torch.sunrise.set_device(i), 256, id="set_device_256"),
        pytest.param(lambda i: torch.sunrise.set_device(i), 200, id="set_device_200"),
        pytest.param(lambda i: torch.sunrise.device(i).__enter__(), 257, id="device_ctx_257"),
        pytest.param(lambda i: torch.sunrise.synchronize(i), 257, id="synchronize_257"),
        pytest.param(lambda i: torch.sunrise.memory_stats(i), 256, id="memory_stats_256"),
        pytest.param(lambda i: torch.sunrise.current_stream(i), 257, id="current_stream_257"),
        pytest.param(lambda i: torch.sunrise.get_device_properties(i), 256, id="get_device_properties_256"),
    ],
)
def test_large_device_index_is_rejected(call, index) -> None:
    error = None
    try:
        call(index)
    except Exception as e:  # noqa: BLE001 - checked below
        error = e
    finally:
        torch.sunrise.set_device(0)
    assert isinstance(error, torch.AcceleratorError), f"{index}: got {error!r}"
    assert f"sunrise:{index}" in str(error), str(error)


def test_non_sunrise_device_arguments() -> None:
    with pytest.raises(ValueError, match="sunrise"):
        torch.sunrise.set_device("cpu")
    with pytest.raises(ValueError, match="sunrise"):
        torch.sunrise.synchronize(torch.device("cpu"))
    with pytest.raises(TypeError):
        torch.sunrise.set_device(1.5)


# --------------------------------------------------------- tensor misuse


def test_numpy_of_a_device_tensor() -> None:
    d = torch.arange(3.0, device="sunrise")
    with pytest.raises(TypeError, match="cpu"):
        d.numpy()
    assert d.cpu().numpy().tolist() == torch.arange(3.0).numpy().tolist()


def test_item_of_a_multi_element_tensor() -> None:
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        torch.ones(3, device="sunrise").item()


def test_bad_sizes() -> None:
    with pytest.raises(RuntimeError, match="negative dimension"):
        torch.empty(-1, device="sunrise")
    with pytest.raises(RuntimeError, match="negative dimension"):
        torch.ones(3, device="sunrise").resize_(-2)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.empty(2**62, device="sunrise")
    with pytest.raises(RuntimeError, match="broadcast"):
        torch.empty(3, device="sunrise").copy_(torch.ones(4))


@pytest.mark.two_devices
def test_set_storage_from_another_device() -> None:
    d0 = torch.ones(3, device="sunrise:0")
    d1 = torch.ones(3, device="sunrise:1")
    with pytest.raises(RuntimeError) as info:
        d0.set_(d1.untyped_storage())
    assert "sunrise:0" in str(info.value) and "sunrise:1" in str(info.value)
    with pytest.raises(RuntimeError, match="cpu"):
        d0.set_(torch.ones(3).untyped_storage())
    assert_close(d0.cpu(), torch.ones(3))


def test_pinned_factory_rejected_for_device_tensors() -> None:
    with pytest.raises(RuntimeError, match="pinned"):
        torch.empty(2, device="sunrise", pin_memory=True)


def test_rng_state_validation() -> None:
    with pytest.raises(RuntimeError, match="wrong size"):
        torch.sunrise.set_rng_state(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="ByteTensor"):
        torch.sunrise.set_rng_state(torch.zeros(16))


def test_invalid_stream_id() -> None:
    bogus = torch.Stream(stream_id=1000, device_index=0, device_type=torch.sunrise.current_stream().device_type)
    with pytest.raises(RuntimeError, match="stream id 1000"):
        torch.sunrise.set_stream(bogus)
    assert torch.sunrise.current_stream() == torch.sunrise.default_stream()


def test_event_timing_misuse() -> None:
    plain_a, plain_b = torch.Event(device="sunrise"), torch.Event(device="sunrise")
    plain_a.record()
    plain_b.record()
    with pytest.raises((ValueError, RuntimeError), match="enable_timing"):
        plain_a.elapsed_time(plain_b)
    timed_a, timed_b = torch.Event(device="sunrise", enable_timing=True), torch.Event(device="sunrise", enable_timing=True)
    with pytest.raises((ValueError, RuntimeError), match="recorded"):
        timed_a.elapsed_time(timed_b)


# ------------------------------------------- errors that must not be late


def test_fill_overflow_raises_at_the_call() -> None:
    with pytest.raises(RuntimeError, match="overflow") as cpu_error:
        torch.zeros(3, dtype=torch.uint8).fill_(300)
    assert cpu_error.value is not None
    d = torch.zeros(3, dtype=torch.uint8, device="sunrise")
    error = None
    try:
        d.fill_(300)
    except RuntimeError as e:
        error = e
    leftover = pending_device_errors()  # also clears what the call left behind
    assert error is not None and "overflow" in str(error), f"fill_ did not raise; the device reported later: {leftover}"
    assert not leftover
    assert_close(d.cpu(), torch.zeros(3, dtype=torch.uint8))


def test_copy_with_partial_overlap_raises_like_cpu() -> None:
    c = torch.arange(10.0)
    with pytest.raises(RuntimeError, match="unsupported operation"):
        c[1:].copy_(c[:-1])
    d = torch.arange(10.0).sunrise()
    error = None
    try:
        d[1:].copy_(d[:-1])
    except RuntimeError as e:
        error = e
    leftover = pending_device_errors()
    assert error is not None and "unsupported operation" in str(error), f"no error; device now holds {d.cpu()}"
    assert not leftover
    assert_close(d.cpu(), c)


def test_copy_into_internally_overlapping_destination_raises_at_the_call() -> None:
    with pytest.raises(RuntimeError, match="unsupported operation"):
        torch.zeros(1).expand(4).copy_(torch.arange(4.0))
    dst = torch.zeros(1, device="sunrise").expand(4)
    error = None
    try:
        dst.copy_(torch.arange(4.0).sunrise())
    except RuntimeError as e:
        error = e
    leftover = pending_device_errors()
    assert error is not None and "unsupported operation" in str(error), f"no error at copy_; later: {leftover}"
    assert not leftover


@pytest.mark.two_devices
def test_an_asynchronous_error_is_raised_once_and_cleared() -> None:
    # An asynchronous failure on device 1, injected as failing device work.
    torch_sunrise._C._runtime.inject_async_error(1, "injected overflow")
    try:
        with pytest.raises(torch.AcceleratorError, match="injected overflow"):
            torch.sunrise.synchronize(1)
        torch.sunrise.synchronize(1)  # raised once: the device is usable again
        x = torch.arange(4.0, device="sunrise:1")
        assert_close(x.cpu(), torch.arange(4.0))
    finally:
        pending_device_errors()  # do not leak the sticky error into other tests


# ------------------------------------------------------------ raw runtime


def test_runtime_round_trip_through_raw_pointers() -> None:
    src = torch.arange(16, dtype=torch.float32)
    dst = torch.zeros(16, dtype=torch.float32)
    p = rt.malloc(64)
    try:
        assert rt.pointer_type(p) == "device"
        rt.memcpy_htod(p, src.data_ptr(), 64)
        rt.memcpy_dtoh(dst.data_ptr(), p, 64)
    finally:
        rt.free(p)
    assert_close(dst, src)
    assert rt.pointer_type(src.data_ptr()) == "pageable"
    assert rt.pointer_type(src.pin_memory().data_ptr()) == "pinned"
    assert rt.pointer_type(src.sunrise().data_ptr()) == "device"
    handle = torch_sunrise._C._stream_handle(0, 0)
    rt.stream_synchronize(handle)
    assert rt.stream_query(handle)


def test_runtime_null_stream() -> None:
    with pytest.raises(RuntimeError, match="srErrorInvalidResourceHandle"):
        rt.stream_synchronize(0)
    with pytest.raises(RuntimeError, match="srErrorInvalidResourceHandle"):
        rt.stream_query(0)


def test_runtime_free_of_a_never_allocated_pointer() -> None:
    host = torch.zeros(16)
    for pointer in (0xDEADBEEF000, host.data_ptr()):
        with pytest.raises(RuntimeError, match="srErrorInvalidDevicePointer"):
            rt.free(pointer)


def test_runtime_double_free() -> None:
    p = rt.malloc(256)
    rt.free(p)
    with pytest.raises(RuntimeError, match="srErrorInvalidDevicePointer") as info:
        rt.free(p)
    assert hex(p) in str(info.value)


def test_runtime_copy_into_freed_memory() -> None:
    p = rt.malloc(64)
    rt.free(p)
    host = torch.ones(16)
    with pytest.raises(RuntimeError, match=RUNTIME_ERROR_NAME) as info:
        rt.memcpy_htod(p, host.data_ptr(), 64)
    assert "sunrise error" in str(info.value).lower()
    with pytest.raises(RuntimeError, match=RUNTIME_ERROR_NAME):
        rt.memcpy_dtoh(host.data_ptr(), p, 64)
    assert_close(host, torch.ones(16))


def test_runtime_copy_direction_and_bounds() -> None:
    p = rt.malloc(64)
    host = torch.ones(32)
    try:
        with pytest.raises(RuntimeError, match=RUNTIME_ERROR_NAME):
            rt.memcpy_htod(p, host.data_ptr(), 128)  # past the allocation
        with pytest.raises(RuntimeError, match=RUNTIME_ERROR_NAME):
            rt.memcpy_htod(host.data_ptr(), host.data_ptr(), 64)  # destination is host memory
    finally:
        rt.free(p)


def test_runtime_garbage_stream_handle_does_not_crash(run_python) -> None:
    proc = run_python(
        """
        import torch_sunrise
        try:
            torch_sunrise._C._runtime.stream_query(0x12345)
        except RuntimeError as e:
            print("raised", "srErrorInvalidResourceHandle" in str(e))
        """
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["raised", "True"], describe(proc)


# --------------------------------------------------------- out of memory


def test_out_of_memory_then_recovery(run_python) -> None:
    proc = run_python(
        """
        import json, torch
        MiB = 1 << 20
        out = {}
        try:
            torch.empty(512 * MiB, dtype=torch.uint8, device="sunrise")
        except torch.OutOfMemoryError as e:
            out["type"] = type(e).__name__
            out["is_runtime_error"] = isinstance(e, RuntimeError)
            out["message"] = str(e)
        x = torch.empty(16 * MiB, dtype=torch.uint8, device="sunrise")
        x.fill_(7)
        out["sum"] = x.sum(dtype=torch.int64).item()
        out["num_ooms"] = torch.sunrise.memory_stats()["num_ooms"]
        print(json.dumps(out))
        """,
        env={"SUNRISE_DEVICE_MEMORY": "256MiB", "SUNRISE_FALLBACK": "silent"},
    )
    assert proc.returncode == 0, describe(proc)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.get("type") == "OutOfMemoryError", out
    assert out["is_runtime_error"]
    message = out["message"]
    assert "512.00 MiB" in message, message  # what was asked
    assert "256.00 MiB" in message, message  # the capacity
    assert "allocated" in message and "reserved" in message, message
    expected = torch.full((16 << 20,), 7, dtype=torch.uint8).sum(dtype=torch.int64).item()
    assert out["sum"] == expected
    assert out["num_ooms"] == 1


@pytest.mark.parametrize("std_exception", [True, False])
def test_a_failed_device_task_still_releases_what_it_holds(std_exception) -> None:
    # Earlier tests' garbage (tensors in traceback cycles) must not be collected while counting.
    gc.collect()
    gc.disable()
    try:
        held = torch.empty(1 << 20, dtype=torch.uint8, device="sunrise")
        torch.sunrise.synchronize()
        base = torch.sunrise.memory_allocated() - held.numel()
        torch_sunrise._C._runtime.inject_async_error(0, "task failed", holding=held, std_exception=std_exception)
        del held
        try:
            with pytest.raises(torch.AcceleratorError, match="task failed" if std_exception else "not a std::exception"):
                torch.sunrise.synchronize()
        finally:
            pending_device_errors()
        assert torch.sunrise.memory_allocated() == base
    finally:
        gc.enable()


@pytest.mark.two_devices
@pytest.mark.parametrize("stray", ["grads", "exp_avgs", "exp_avg_sqs", "state_steps"])
def test_fused_adamw_with_state_on_another_device_raises(stray) -> None:
    names = ("params", "grads", "exp_avgs", "exp_avg_sqs", "state_steps")
    lists = {n: [torch.ones(() if n == "state_steps" else 3, device="sunrise:1" if n == stray else "sunrise:0")]
             for n in names}
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch._fused_adamw_(lists["params"], lists["grads"], lists["exp_avgs"], lists["exp_avg_sqs"], [],
                            lists["state_steps"], lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                            amsgrad=False, maximize=False)
    assert torch.equal(lists["params"][0].cpu(), torch.ones(3))


@pytest.mark.two_devices
def test_memory_queries_and_synchronize_of_another_device_keep_the_current_one() -> None:
    torch.sunrise.set_device(0)
    torch.sunrise.mem_get_info(1)
    torch.sunrise.synchronize(1)
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(1 << 50, dtype=torch.uint8, device="sunrise:1")
    assert torch.sunrise.current_device() == 0
