"""Errors CPU and CUDA raise at the call, raised by the call on sunrise.

A sunrise kernel is ATen's CPU kernel run by the device, so its dtype dispatch and the argument
checks it makes as it starts run on the device thread; the first launch of an op with new operand
dtypes (and arguments that pick the kernel) waits for it and raises its error at the call
(``csrc/aten/DtypeCheckedLaunch.h``), with its warnings. Every test compares with what the CPU
raises for the same call, and checks the device keeps working afterwards.
"""

from __future__ import annotations

import warnings
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_as_cpu, pending_device_errors

Call = Callable[[str], object]

# Dtypes whose CPU kernel does not exist, by way the op runs on sunrise.
DTYPE_ERRORS: dict[str, Call] = {
    # generated structured wrappers: functional, in-place, out=
    "abs bool": lambda d: torch.ones(4, dtype=torch.bool, device=d).abs(),
    "frac_ int64": lambda d: torch.ones(4, dtype=torch.int64, device=d).frac_(),
    "hypot out= int32": lambda d: torch.hypot(torch.ones(4, dtype=torch.int32, device=d),
                                              torch.ones(4, dtype=torch.int32, device=d),
                                              out=torch.empty(4, dtype=torch.int32, device=d)),
    "lt complex64": lambda d: torch.ones(4, dtype=torch.complex64, device=d) < 1,
    "sum complex32": lambda d: torch.ones(4, dtype=torch.complex32, device=d).sum(),
    # hand-written device tasks
    "flip complex32": lambda d: torch.ones(4, dtype=torch.complex32, device=d).flip(0),
    "adaptive_avg_pool2d int64": lambda d: F.adaptive_avg_pool2d(torch.ones(1, 2, 4, 4, dtype=torch.long, device=d), 2),
    "layer_norm int64": lambda d: F.layer_norm(torch.ones(2, 4, dtype=torch.long, device=d), (4,)),
}


def cpu_error(call: Call) -> BaseException:
    with pytest.raises(Exception) as raised:
        call("cpu")
    return raised.value


def assert_device_works() -> None:
    assert pending_device_errors() == []
    assert_same_as_cpu(torch.arange(6.0, device="sunrise").sum(), torch.arange(6.0).sum())


@pytest.mark.parametrize("name", DTYPE_ERRORS)
def test_dtype_error_is_raised_by_the_call(name: str) -> None:
    call = DTYPE_ERRORS[name]
    expected = cpu_error(call)
    assert type(expected) is NotImplementedError
    for _ in range(2):  # every call, not only the first launch with these dtypes
        with pytest.raises(NotImplementedError) as got:
            call("sunrise")
        assert str(got.value).splitlines()[0] == str(expected).splitlines()[0]
    assert_device_works()


def test_supported_dtypes_still_run_after_an_unsupported_one() -> None:
    x = torch.tensor([-1.5, 2.0, -0.0], dtype=torch.float64)
    with pytest.raises(NotImplementedError):
        torch.ones(3, dtype=torch.bool, device="sunrise").abs()
    for _ in range(3):  # the first launch with float64 waits for the kernel, later ones do not
        assert_same_as_cpu(x.to("sunrise").abs(), x.abs())
    assert_device_works()


def test_a_data_fault_stays_asynchronous_on_the_first_launch() -> None:
    # An index out of range is found while the kernel runs: on CUDA a device-side assert raised by
    # a later synchronization, not by the call. The combination of dtypes is new to this call site.
    src = torch.ones(4, dtype=torch.complex64, device="sunrise")
    index = torch.tensor([7], dtype=torch.int32, device="sunrise")
    try:
        torch.index_select(src, 0, index)  # returns
        with pytest.raises(torch.AcceleratorError, match="index out of range"):
            torch.sunrise.synchronize()
    finally:
        pending_device_errors()
    assert_device_works()


ALL_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16,
              torch.uint32, torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64,
              torch.complex32, torch.complex64, torch.complex128)

# Ops whose sunrise path once took dtypes CPU refuses. (call, whether its values are deterministic)
DtypeCall = Callable[[str, torch.dtype], object]
SUPPORT_CASES: dict[str, tuple[DtypeCall, bool]] = {
    "pixel_shuffle": (lambda d, t: F.pixel_shuffle(torch.arange(32.0).reshape(2, 4, 2, 2).to(d, t), 2), True),
    "pixel_shuffle channels_last": (lambda d, t: F.pixel_shuffle(
        torch.arange(32.0).reshape(2, 4, 2, 2).to(d, t, memory_format=torch.channels_last), 2), True),
    "pixel_unshuffle": (lambda d, t: F.pixel_unshuffle(torch.arange(32.0).reshape(2, 1, 4, 4).to(d, t), 2), True),
    "max_pool1d": (lambda d, t: F.max_pool1d(torch.arange(16.0).reshape(2, 2, 4).to(d, t), 2), True),
    "bernoulli": (lambda d, t: torch.bernoulli(torch.full((8,), 0.5).to(d, t)), False),
    "bernoulli_ with tensor p": (lambda d, t: torch.zeros(8, device=d).to(t).bernoulli_(torch.full((8,), 0.5, device=d)), False),
    "masked_select": (lambda d, t: torch.masked_select(torch.arange(6.0).to(d, t), torch.arange(6, device=d) % 2 == 0),
                      True),
    "random_ from, to": (lambda d, t: torch.zeros(8, device=d).to(t).random_(0, 10), False),
}


def outcome(call: DtypeCall, device: str, dtype: torch.dtype) -> object:
    try:
        result = call(device, dtype)
        if device == "sunrise":
            torch.sunrise.synchronize()
        return result
    except Exception as error:  # the class and first line are what test_dtypes-like checks see
        return (type(error), str(error).splitlines()[0])


@pytest.mark.parametrize("name", SUPPORT_CASES)
def test_supported_dtypes_are_cpus(name: str) -> None:
    call, deterministic = SUPPORT_CASES[name]
    for dtype in ALL_DTYPES:
        expected, got = outcome(call, "cpu", dtype), outcome(call, "sunrise", dtype)
        if isinstance(expected, tuple) or isinstance(got, tuple):
            assert got == expected, dtype
        elif deterministic:
            assert_same_as_cpu(got, expected)
    assert_device_works()


def test_a_dtype_error_behind_an_empty_operand_is_raised_at_the_call() -> None:
    # CPU's kernel returns before its dtype dispatch when the input is empty: that launch runs,
    # and must not make the same dtypes with elements asynchronous.
    empty = torch.ones(0, 2, 4, 4, dtype=torch.complex128)  # an empty batch
    full = torch.ones(1, 2, 4, 4, dtype=torch.complex128)
    for x in (empty, full, full, torch.ones(1, 2, 0, 4)):  # last: CPU's check of the sizes
        call = lambda d, t, x=x: F.adaptive_avg_pool2d(x.to(d), 2)  # noqa: E731
        expected, got = outcome(call, "cpu", x.dtype), outcome(call, "sunrise", x.dtype)
        if isinstance(expected, tuple):
            assert got == expected
        else:
            assert_same_as_cpu(got, expected)
    assert_device_works()


@pytest.mark.parametrize("dtype", [torch.uint16, torch.complex32])
def test_partly_supported_dtypes_are_checked_on_every_launch(dtype: torch.dtype) -> None:
    # CPU's flip copies rows for these dtypes along the first dimension but has no kernel for
    # them along the last: an error of the second call must not wait for a synchronization.
    x = torch.arange(12, dtype=torch.int32).reshape(3, 4).to(dtype)
    assert_same_as_cpu(x.to("sunrise").flip(0), x.flip(0))
    expected = cpu_error(lambda d: x.to(d).flip(1))
    assert type(expected) is NotImplementedError
    with pytest.raises(NotImplementedError, match=str(expected).splitlines()[0]):
        x.to("sunrise").flip(1)
    assert_device_works()


# out= tensors on another device than the inputs: CPU and CUDA refuse them at the call, 0-dim
# ones included (a 0-dim CPU tensor is accepted only as an input, where it is a scalar).
CPU_OUT_CALLS: dict[str, Callable[[torch.Tensor, torch.Tensor], object]] = {
    "index_select": lambda x, out: torch.index_select(x, 0, torch.tensor(0, device=x.device), out=out),
    "where": lambda x, out: torch.where(x > 0, x, x, out=out),
    "logical_and": lambda x, out: torch.logical_and(x, x, out=out),
    "abs": lambda x, out: torch.abs(x, out=out),
    "sin (generated)": lambda x, out: torch.sin(x, out=out),
}


@pytest.mark.parametrize("name", CPU_OUT_CALLS)
def test_out_on_the_cpu_for_device_inputs_raises(name: str) -> None:
    call = CPU_OUT_CALLS[name]
    x = torch.tensor(1.5, device="sunrise")  # 0-dim: the results are 0-dim
    out = torch.full_like(call(x.cpu(), None), 7.0)
    before = out.clone()
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device|Expected out tensor"):
        call(x, out)
    assert torch.equal(out, before)  # untouched
    assert_device_works()


def test_arange_out_resizes_as_cpu_does() -> None:
    # arange keeps an out= with the right number of elements as it is, and resizes another
    # with its own warning (not resize_output's).
    for shape in ((2, 2), (5,), (0,)):
        outs = {d: torch.full(shape, 9.0, device=d) for d in ("cpu", "sunrise")}
        caught = {}
        for d, out in outs.items():
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                torch.arange(0, 4, out=out)
            caught[d] = [str(x.message).split(" (Triggered")[0] for x in w]
        assert caught["sunrise"] == caught["cpu"]
        assert_same_as_cpu(outs["sunrise"], outs["cpu"])
    assert_device_works()


def test_the_kernel_cpu_picks_keys_the_dtype_check() -> None:
    # CPU's convolution picks its kernel by the arguments: the dilated one has no uint8. A uint8
    # convolution that ran must not make a dilated one asynchronous.
    x = torch.ones(1, 2, 6, 6, dtype=torch.uint8)
    w = torch.ones(2, 2, 3, 3, dtype=torch.uint8)
    assert_same_as_cpu(F.conv2d(x.to("sunrise"), w.to("sunrise")), F.conv2d(x, w))
    expected = cpu_error(lambda d: F.conv2d(x.to(d), w.to(d), dilation=2))
    assert type(expected) is NotImplementedError
    with pytest.raises(NotImplementedError, match=str(expected).splitlines()[0]):
        F.conv2d(x.to("sunrise"), w.to("sunrise"), dilation=2)
    assert_device_works()


WARNING_PROBE = """
import warnings, torch, torch_sunrise
x = torch.ones(2, dtype=torch.complex64, device="sunrise")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    {call}
    torch.sunrise.synchronize()
print([str(w.message).split(" (Triggered")[0] for w in caught])
"""


@pytest.mark.parametrize("call", [
    "torch.cumsum(x, 0, out=torch.empty(2, dtype=torch.long, device='sunrise'))",  # a kernel's warning
    "x.to(torch.float32)",  # copy_'s
])
def test_a_kernels_warning_reaches_python_at_the_call(call: str) -> None:
    # CPU's kernels warn once per process (TORCH_WARN_ONCE): a fresh process shows it, as a Python
    # warning, not as text the device thread prints.
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", WARNING_PROBE.format(call=call)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['Casting complex values to real discards the imaginary part']"
    assert "Casting complex" not in run.stderr


# Argument checks CPU kernels make as they start, which CUDA makes on the host: raised by the call.
# (call, a call with the same operand dtypes that runs, made first where there is one)
ARGUMENT_ERRORS: dict[str, tuple[Call, Call | None]] = {
    "bmm float, bool": (lambda d: torch.bmm(torch.ones(1, 2, 2, device=d), torch.ones(1, 2, 2, dtype=torch.bool, device=d)),
                        None),
    "mm bool, float": (lambda d: torch.mm(torch.ones(2, 2, dtype=torch.bool, device=d), torch.ones(2, 2, device=d)),
                       None),
    "mean out= int64": (lambda d: torch.mean(torch.ones(2, 3, device=d), 1,
                                             out=torch.empty(2, dtype=torch.long, device=d)), None),
    "renorm bool": (lambda d: torch.renorm(torch.ones(3, 3, dtype=torch.bool, device=d), 2, 0, 0.5), None),
    # an empty input skips CPU's dtype dispatch: autograd's refusal of a complex result is the error
    "bernoulli empty complex requiring grad": (
        lambda d: torch.bernoulli(torch.empty(0, 3, dtype=torch.complex64, device=d, requires_grad=True)), None),
    # include_self picks a kernel with fewer dtypes: it keys the check with the dtypes
    "scatter_reduce amax complex, include_self=False": (
        lambda d: torch.zeros(3, dtype=torch.complex64, device=d).scatter_reduce(
            0, torch.tensor([0, 1], device=d), torch.ones(2, dtype=torch.complex64, device=d), "amax",
            include_self=False),
        lambda d: torch.zeros(3, dtype=torch.complex64, device=d).scatter_reduce(
            0, torch.tensor([0, 1], device=d), torch.ones(2, dtype=torch.complex64, device=d), "sum",
            include_self=True)),
}


@pytest.mark.parametrize("name", ARGUMENT_ERRORS)
def test_an_argument_error_is_raised_by_the_call(name: str) -> None:
    call, runs = ARGUMENT_ERRORS[name]
    if runs is not None:
        assert_same_as_cpu(runs("sunrise"), runs("cpu"))
    expected = cpu_error(call)
    for _ in range(2):
        with pytest.raises(type(expected)) as got:
            call("sunrise")
        assert type(got.value) is type(expected)
        assert str(got.value).splitlines()[0] == str(expected).splitlines()[0]
    assert_device_works()
