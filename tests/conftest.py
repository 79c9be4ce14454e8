"""Shared fixtures, markers and helpers for the torch_sunrise test suites.

* Every test starts with empty fallback counters and runs with the CPU fallback
  in ``silent`` mode (no warning noise), in ``error`` mode when marked
  ``@pytest.mark.no_fallback``, or as it asks through the ``fallback_mode``
  fixture; the mode that was active before the test is restored afterwards.
* Every test must leave the devices without pending (sticky, asynchronous)
  errors: ``_no_pending_device_errors`` synchronizes each device after the
  test and fails the test if one reports an error. It also puts the current
  device and every device's current stream back to their defaults, so a test
  that fails inside a ``torch.sunrise.device``/``stream`` block cannot leak
  state into the next one.
* ``run_python`` runs a snippet in a fresh interpreter (for environment
  variables read at start-up, autoloading, out-of-memory and crash checks).
* ``assert_same_as_cpu`` is THE comparison of a sunrise result with the CPU's
  (bitwise by default); ``run_on_both`` and ``assert_module_same_as_cpu`` build
  on it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
import textwrap
from typing import Any, Callable, Iterator, Mapping, Optional

# torch.compile: one Inductor cache for the whole run and its subprocesses, kept
# between runs in build/ (compiled C++ is not rebuilt), and compilation in the
# test process (no pool of compile workers to start on a 2-core machine).
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "inductor_cache"),
)
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import pytest
import torch

import torch_sunrise

# Variables that change the device or fallback behaviour. Subprocesses start
# from a clean slate so that they test the documented defaults.
_SUNRISE_ENV = (
    "SUNRISE_FALLBACK",
    "SUNRISE_DEVICE_COUNT",
    "SUNRISE_DEVICE_MEMORY",
    "SUNRISE_LAUNCH_BLOCKING",
    "SUNRISE_MEMCHECK",
    "SUNRISE_COMPARE_CPU",
    "TORCH_DEVICE_BACKEND_AUTOLOAD",
)

SUBPROCESS_TIMEOUT_S = 120


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "two_devices: the test needs at least two sunrise devices (the default)"
    )
    config.addinivalue_line(
        "markers", "no_fallback: the CPU fallback is forbidden during the test (SUNRISE_FALLBACK=error)"
    )
    config.addinivalue_line(
        "markers", "opinfo_regression: reproduces a product bug found by the OpInfo suite "
        "(tests/test_opinfo_device.py), fixed since"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.sunrise.device_count() >= 2:
        return
    skip = pytest.mark.skip(reason="needs two sunrise devices (SUNRISE_DEVICE_COUNT >= 2)")
    for item in items:
        if "two_devices" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fallback_mode_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with empty fallback counters and the fallback in ``silent`` mode, or in
    ``error`` mode (any fallback raises) when marked ``no_fallback``; the mode that was active
    before is restored afterwards."""
    previous = torch_sunrise.get_fallback_mode()
    torch_sunrise.set_fallback_mode("error" if request.node.get_closest_marker("no_fallback") else "silent")
    torch_sunrise.reset_fallback_stats()
    yield
    torch_sunrise.set_fallback_mode(previous)


@pytest.fixture
def fallback_mode() -> Iterator[Callable[[str], None]]:
    """``fallback_mode("warn" | "silent" | "error")`` sets the mode for this test
    and clears the fallback counters (re-arming the once-per-op warnings); the
    previous mode is restored afterwards."""
    previous = torch_sunrise.get_fallback_mode()

    def set_mode(mode: str) -> None:
        torch_sunrise.set_fallback_mode(mode)
        torch_sunrise.reset_fallback_stats()

    yield set_mode
    torch_sunrise.set_fallback_mode(previous)


def pending_device_errors() -> list[str]:
    """Synchronizes every device and returns the errors they report.

    Each device is synchronized while it is the current device: raising an
    asynchronous error clears the *current* device's sticky state, so this
    also leaves the devices usable for the next test."""
    errors = []
    for index in range(torch.sunrise.device_count()):
        with torch.sunrise.device(index):
            try:
                torch.sunrise.synchronize()
            except Exception as e:  # noqa: BLE001 - report whatever the device raised
                errors.append(f"sunrise:{index}: {type(e).__name__}: {e}")
    return errors


@pytest.fixture(autouse=True)
def _no_pending_device_errors() -> Iterator[None]:
    yield
    errors = pending_device_errors()
    for index in range(torch.sunrise.device_count()):
        torch.sunrise.set_stream(torch.sunrise.default_stream(index))  # also sets the device
    torch.sunrise.set_device(0)
    if errors:
        pytest.fail("the test left pending device errors:\n" + "\n".join(errors), pytrace=False)


def _clean_env(extra: Optional[Mapping[str, str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SUNRISE_ENV}
    if extra:
        env.update(extra)
    return env


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess]:
    """``run_python(code, env={...})`` runs ``code`` in a fresh interpreter with
    the SUNRISE_* variables removed (then ``env`` applied) and returns the
    CompletedProcess (text mode, stdout and stderr captured)."""

    def run(code: str, env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=_clean_env(env),
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )

    return run


def assert_same_as_cpu(got: Any, expected: Any, *, rtol: Optional[float] = 0, atol: Optional[float] = 0,
                       strides: bool = True, device: str = "sunrise", path: str = "result") -> None:
    """Asserts that ``got``, computed with sunrise tensors, is what the CPU computed: ``expected``.

    The one comparison of the suites. Tensors, or (nested) lists and tuples of tensors and plain
    values, compared item by item:

    * every tensor of ``got`` is on ``device``: a device type ("sunrise", the default), a device
      ("sunrise:1"), or "cpu" for host results of device work (a device-to-host copy);
    * with the CPU result's dtype, shape and (``strides=True``) strides;
    * bitwise equal values (NaN equal to NaN) by default: sunrise runs CPU eager's kernels, so its
      bits are CPU eager's. ``rtol``/``atol`` loosen that (both None: assert_close's per-dtype
      defaults); pass them only with a comment saying why the bits may differ.

    Plain values (Python numbers, None, ...) must be equal.
    """
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor), f"{path}: {type(got).__name__} where the CPU returns a tensor"
        where = got.device.type if ":" not in device else str(got.device)
        assert where == device, f"{path}: on {got.device}, expected {device}"
        assert (got.dtype, got.shape) == (expected.dtype, expected.shape), \
            f"{path}: {got.dtype} {list(got.shape)}, CPU {expected.dtype} {list(expected.shape)}"
        if strides:
            assert got.stride() == expected.stride(), f"{path}: strides {got.stride()}, CPU {expected.stride()}"
        torch.testing.assert_close(got.detach().cpu(), expected.detach(), rtol=rtol, atol=atol, equal_nan=True,
                                   msg=lambda m: f"{path}: {m}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), \
            f"{path}: {got!r:.200} where the CPU returns {len(expected)} items"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_as_cpu(g, e, rtol=rtol, atol=atol, strides=strides, device=device, path=f"{path}[{i}]")
    else:
        assert got == expected, f"{path}: {got!r}, CPU {expected!r}"


def run_on_both(fn: Callable[..., Any], *cpu_args: Any) -> tuple[Any, Any]:
    """``(fn(*sunrise copies of cpu_args), fn(*clones of cpu_args))``: the same call on sunrise and
    on the CPU, for ``assert_same_as_cpu(*run_on_both(fn, ...))``. Non-tensor arguments are passed
    as they are; the CPU call gets clones, so an in-place ``fn`` leaves ``cpu_args`` alone."""
    got = fn(*[a.to("sunrise") if isinstance(a, torch.Tensor) else a for a in cpu_args])
    expected = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in cpu_args])
    return got, expected


def assert_module_same_as_cpu(build: Callable[[], torch.nn.Module], make_input: Callable[[], torch.Tensor],
                              loss: Callable[[torch.Tensor], torch.Tensor] = lambda out: out.square().sum(),
                              exact_grads: bool = True) -> None:
    """A module's forward and backward on CPU and sunrise (a deep copy, same input): the output, the
    input's and every parameter's gradient compared with ``assert_same_as_cpu``; with
    ``exact_grads=False`` the gradients within assert_close's default tolerances and without the
    stride check. No fallback call may happen (``fallback_stats()`` stays empty)."""
    torch.manual_seed(0)
    module = build()
    module_s = copy.deepcopy(module).sunrise()
    x = make_input()
    xc, xs = x.clone().requires_grad_(), x.sunrise().requires_grad_()
    out_c, out_s = module(xc), module_s(xs)
    assert_same_as_cpu(out_s.detach(), out_c.detach())
    loss(out_c).backward()
    loss(out_s).backward()
    tolerance = {} if exact_grads else {"rtol": None, "atol": None, "strides": False}
    assert_same_as_cpu(xs.grad, xc.grad, **tolerance)
    for p_c, p_s in zip(module.parameters(), module_s.parameters()):
        assert_same_as_cpu(p_s.grad, p_c.grad, **tolerance)
    assert torch_sunrise.fallback_stats() == {}


@contextlib.contextmanager
def no_fallback() -> Iterator[None]:
    """Inside: any CPU fallback raises (SUNRISE_FALLBACK=error), so the code must run natively.
    For a part of a test; a whole test is marked ``@pytest.mark.no_fallback`` instead."""
    mode = torch_sunrise.get_fallback_mode()
    torch_sunrise.set_fallback_mode("error")
    try:
        yield
    finally:
        torch_sunrise.set_fallback_mode(mode)


def fallback_calls(prefix: str = "aten::") -> int:
    """Fallback calls of the ops whose names start with ``prefix``, since the test started."""
    return sum(v for k, v in torch_sunrise.fallback_stats().items() if k.startswith(prefix))


def queue_slow_work(milliseconds: float = 50) -> None:
    """Keeps the current stream busy for ``milliseconds`` (``torch.sunrise._sleep``, which takes no
    host core), so that work launched next is still waiting when the host goes on."""
    torch.sunrise._sleep(int(milliseconds * 1e6))


def pending_while(fn: Callable[[], Any]) -> bool:
    """Whether the stream still had work queued when fn() returned (fn's work is queued behind
    300 ms of busy stream): fn launched device work instead of running on the host. fn runs once
    before, unmeasured: an op's first launch with new operand dtypes waits for its kernel (errors
    at the call), and the answer must not depend on which tests ran first."""
    fn()
    torch.sunrise.synchronize()
    queue_slow_work(300)
    fn()
    pending = not torch.sunrise.current_stream().query()
    torch.sunrise.synchronize()
    return pending


def describe(proc: subprocess.CompletedProcess) -> str:
    """Exit status and output of a subprocess, for assertion messages."""
    return f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
