"""Shared fixtures for the torch_sunrise test suites.

* Every test runs with the CPU fallback in ``silent`` mode (no warning noise)
  unless it asks for another mode through the ``fallback_mode`` fixture; the
  mode that was active before the test is restored afterwards.
* Every test must leave the devices without pending (sticky, asynchronous)
  errors: ``_no_pending_device_errors`` synchronizes each device after the
  test and fails the test if one reports an error. It also puts the current
  device and every device's current stream back to their defaults, so a test
  that fails inside a ``torch.sunrise.device``/``stream`` block cannot leak
  state into the next one.
* ``run_python`` runs a snippet in a fresh interpreter (for environment
  variables read at start-up, autoloading, out-of-memory and crash checks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Callable, Iterator, Mapping, Optional

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
    "TORCH_DEVICE_BACKEND_AUTOLOAD",
)

SUBPROCESS_TIMEOUT_S = 120


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "two_devices: the test needs at least two sunrise devices (the default)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.sunrise.device_count() >= 2:
        return
    skip = pytest.mark.skip(reason="needs two sunrise devices (SUNRISE_DEVICE_COUNT >= 2)")
    for item in items:
        if "two_devices" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fallback_silent_by_default() -> Iterator[None]:
    previous = torch_sunrise.get_fallback_mode()
    torch_sunrise.set_fallback_mode("silent")
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


def assert_same_as_cpu(got: torch.Tensor, expected: torch.Tensor) -> None:
    """A sunrise result bitwise equal to the CPU's, with the CPU kernel's dtype, shape and strides."""
    assert got.device.type == "sunrise"
    assert (got.dtype, got.shape, got.stride()) == (expected.dtype, expected.shape, expected.stride())
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=0)


def describe(proc: subprocess.CompletedProcess) -> str:
    """Exit status and output of a subprocess, for assertion messages."""
    return f"exit status {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
