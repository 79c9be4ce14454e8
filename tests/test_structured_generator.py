"""The build-time generator of structured-op wrappers (csrc/aten/gen_structured_ops.py)
must fail loudly when it would leave an op group out that it does not expect to:
after a torch upgrade, an op silently moving to the CPU fallback is a slowdown
nobody would see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GENERATOR = Path(__file__).resolve().parents[1] / "csrc" / "aten" / "gen_structured_ops.py"

_RUN = """
import runpy, sys
sys.argv = ["gen_structured_ops.py", "--out-dir", sys.argv[1]]
ns = runpy.run_path({gen!r}, run_name="not_main")
if {drop_expected}:
    ns["EXPECTED_SKIPS"].clear()
ns["main"]()
"""


def _generate(tmp_path: Path, drop_expected: bool) -> subprocess.CompletedProcess:
    code = _RUN.format(gen=str(GENERATOR), drop_expected=drop_expected)
    env = dict(os.environ, TORCH_DEVICE_BACKEND_AUTOLOAD="0")
    return subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)


def test_generator_accepts_the_installed_torch(tmp_path) -> None:
    proc = _generate(tmp_path, drop_expected=False)
    assert proc.returncode == 0, proc.stderr
    assert "groups generated" in proc.stdout and (tmp_path / "StructuredOps_0.cpp").exists()


def test_generator_fails_on_an_unexpected_skip(tmp_path) -> None:
    proc = _generate(tmp_path, drop_expected=True)
    assert proc.returncode != 0
    assert "EXPECTED_SKIPS" in proc.stderr and "index:" in proc.stderr
