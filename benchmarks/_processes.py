"""Running a benchmark module again in fresh processes: this machine's speed
drifts between processes, so a figure worth quoting is a range over several."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile


def results_of_fresh_processes(module: str, args: list[str], runs: int, timeout_s: float = 1800) -> list[dict]:
    """Runs ``python -m module *args --json FILE`` ``runs`` times, each in a new
    process, and returns what each wrote to FILE."""
    rows = []
    for _ in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, "-m", module, *args, "--json", out.name], check=True, timeout=timeout_s)
            with open(out.name) as f:
                rows.append(json.load(f))
    return rows
