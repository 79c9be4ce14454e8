"""A C++ extension built against the headers torch_sunrise installs runs work on sunrise streams.

The extension (``tests/cpp_extension/scale_ops.cpp``) is compiled with
``torch.utils.cpp_extension.load`` and ``torch_sunrise.cpp_extension``'s paths and flags, as a
user's would be; the build directory persists under ``build/`` so a rerun only reloads it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch_sunrise.cpp_extension as sunrise_ext
from conftest import assert_same_as_cpu
from torch.utils.cpp_extension import load

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scale_ops() -> object:
    build_dir = ROOT / "build" / "cpp_extension_test"
    build_dir.mkdir(parents=True, exist_ok=True)
    old_path = os.environ.get("PATH", "")
    # The venv's ninja, when the venv is not activated.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
    try:
        load(
            name="sunrise_scale_ops",
            sources=[str(ROOT / "tests" / "cpp_extension" / "scale_ops.cpp")],
            extra_include_paths=sunrise_ext.include_paths(),
            extra_ldflags=sunrise_ext.ldflags(),
            build_directory=str(build_dir),
            is_python_module=False,
        )
    finally:
        os.environ["PATH"] = old_path
    return torch.ops.sunrise_scale_ops


def test_installed_headers_are_the_public_ones() -> None:
    installed = Path(sunrise_ext.include_paths()[0])
    public = sorted(p.relative_to(ROOT / "include") for p in (ROOT / "include").rglob("*.h"))
    assert public and sorted(p.relative_to(installed) for p in installed.rglob("*.h") if p.name != "sunrise_rt.h") == public
    for header in public:
        assert (installed / header).read_bytes() == (ROOT / "include" / header).read_bytes(), header
    assert (installed / "sunrise_rt.h").is_file()


def test_extension_kernel_matches_cpu(scale_ops: object) -> None:
    x = torch.randn(100_003, device="sunrise")
    assert_same_as_cpu(scale_ops.scale(x, 1.5), x.cpu() * 1.5)


def test_extension_runs_on_the_current_stream_in_order(scale_ops: object) -> None:
    side = torch.sunrise.Stream()
    with torch.sunrise.stream(side):
        a = torch.randn(512, 512, device="sunrise")
        assert scale_ops.current_stream_id(a) == side.stream_id != torch.sunrise.default_stream().stream_id
        # Queued behind the product on the same stream: it must read the finished product.
        product = a @ a
        scaled = scale_ops.scale(product, -2.0)
    side.synchronize()
    assert_same_as_cpu(scaled, (a.cpu() @ a.cpu()) * -2.0)


def test_extension_errors_are_python_exceptions(scale_ops: object) -> None:
    # Registered for sunrise only, as a CUDA extension registers for CUDA.
    with pytest.raises(NotImplementedError, match="'CPU' backend"):
        scale_ops.scale(torch.ones(3), 2.0)
    with pytest.raises(RuntimeError, match="expected a contiguous float32 tensor"):
        scale_ops.scale(torch.ones(3, dtype=torch.float64, device="sunrise"), 2.0)
