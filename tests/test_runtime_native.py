"""Runs the emulated runtime's own C++ tests (third_party/sunrise_rt/tests).

The runtime has no torch dependency, so it is built standalone with CMake into
build/sunrise_rt_tests (incremental after the first build, a few seconds) and
each C++ test case runs as its own pytest test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RT = ROOT / "third_party" / "sunrise_rt"
BUILD = ROOT / "build" / "sunrise_rt_tests"
BINARY = BUILD / "sunrise_rt_tests"


def _build() -> str | None:
    """Builds the test binary; returns an error text instead of raising."""
    cmake = shutil.which("cmake") or str(Path(sys.executable).parent / "cmake")
    generator = ["-G", "Ninja"] if shutil.which("ninja") or (Path(sys.executable).parent / "ninja").exists() else []
    try:
        subprocess.run(
            [cmake, "-S", str(RT), "-B", str(BUILD), *generator, "-DCMAKE_BUILD_TYPE=Release",
             "-DSUNRISE_RT_BUILD_TESTS=ON"],
            check=True, capture_output=True, text=True,
        )
        subprocess.run([cmake, "--build", str(BUILD)], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        return f"{e.cmd}\n{e.stdout}\n{e.stderr}"
    return None


_BUILD_ERROR = _build()


def _test_names() -> list[str]:
    if _BUILD_ERROR is not None:
        return ["<build>"]
    out = subprocess.run([str(BINARY), "--list"], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("name", _test_names())
def test_runtime(name: str) -> None:
    assert _BUILD_ERROR is None, f"building the runtime tests failed:\n{_BUILD_ERROR}"
    result = subprocess.run([str(BINARY), name], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(
    "child, report",
    [
        ("child_memcheck_host_reads_device_pointer",
         r"host code: invalid read of device memory at 0x[0-9a-f]+: byte 12 of a live 100-byte allocation of device 0"),
        ("child_memcheck_kernel_writes_past_the_end",
         r"device work: out-of-bounds write to device memory at 0x[0-9a-f]+: 28 bytes after the end of a 100-byte "
         r"allocation of device 0"),
        ("child_memcheck_kernel_reads_freed_memory",
         r"device work: read of freed device memory \(use after free\) at 0x[0-9a-f]+: byte 0 of a 256-byte allocation"),
    ],
)
def test_memcheck_reports_stray_accesses(child: str, report: str) -> None:
    """SUNRISE_MEMCHECK=1: each stray access aborts the process with a report naming the allocation."""
    assert _BUILD_ERROR is None, f"building the runtime tests failed:\n{_BUILD_ERROR}"
    import os
    import re
    import signal

    env = dict(os.environ, SUNRISE_MEMCHECK="1")
    result = subprocess.run([str(BINARY), child], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == -signal.SIGABRT, (result.returncode, result.stdout, result.stderr)
    assert re.search(report, result.stderr), result.stderr
    assert "device pointers are not host addresses" in result.stderr
