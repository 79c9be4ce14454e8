"""Running a script as several ranks of a process group, for the distributed suites.

Each rank is a fresh interpreter started in its own session, with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT`` (loopback only). Every wait is
bounded; when a rank fails or the time is up, all ranks' process groups are killed, so a failing
test leaves no orphan behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RankResult:
    rank: int
    returncode: Optional[int]  # None: killed at the deadline
    stdout: str
    stderr: str


def describe(results: Sequence[RankResult]) -> str:
    return "\n".join(f"--- rank {r.rank}: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}" for r in results)


def kill_group(proc: subprocess.Popen, grace_s: float = 5) -> None:
    """Ends a process started by :func:`start` and its process group: SIGTERM first (a launcher
    such as torchrun then stops its workers), SIGKILL after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait_s or None)
            return
        except subprocess.TimeoutExpired:
            continue


def start(argv: Sequence[str], env: Mapping[str, str], stdout: int = subprocess.PIPE) -> subprocess.Popen:
    """A process in its own session (killable with its children), its output in text mode."""
    return subprocess.Popen(list(argv), env=dict(env), stdout=stdout, stderr=subprocess.PIPE, text=True,
                            cwd=_REPO, start_new_session=True)


def base_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUNRISE_")}
    env.update({"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": os.path.join(_REPO, "tests"),
                "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def wait_all(procs: Sequence[subprocess.Popen], timeout_s: float,
             stop_on_failure: bool = True) -> list[tuple[Optional[int], str, str]]:
    """Waits for every process until the deadline; kills them all when time runs out, or as soon
    as one fails (``stop_on_failure``)."""
    deadline = time.monotonic() + timeout_s
    outputs: dict[int, tuple[Optional[int], str, str]] = {}
    try:
        while len(outputs) < len(procs):
            for i, p in enumerate(procs):
                if i in outputs or p.poll() is None:
                    continue
                out, err = p.communicate()
                outputs[i] = (p.returncode, out, err)
                if p.returncode != 0 and stop_on_failure:
                    raise RuntimeError("a rank failed")
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.05)
    except (RuntimeError, TimeoutError):
        pass
    finally:
        for i, p in enumerate(procs):
            if i not in outputs:
                kill_group(p)
                try:
                    out, err = p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    out, err = "", ""
                outputs[i] = (None, out or "", err or "")  # ended at the deadline or after another's failure
    return [outputs[i] for i in range(len(procs))]


def run_launchers(argvs: Sequence[Sequence[str]], timeout_s: float = 180,
                  env: Optional[Mapping[str, str]] = None) -> list[RankResult]:
    """Runs several launcher command lines (torchrun, accelerate) side by side, as :func:`run_ranks`
    runs ranks; result ``i`` is launcher ``i``'s."""
    procs = [start(argv, base_env(env)) for argv in argvs]
    return [RankResult(i, *res) for i, res in enumerate(wait_all(procs, timeout_s))]


def write_script(code: str) -> str:
    """``code`` (dedented) in a temporary file; the caller removes it."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(textwrap.dedent(code))
        return f.name


def run_ranks(code: str, world_size: int = 2, timeout_s: float = 120, env: Optional[Mapping[str, str]] = None,
              stop_on_failure: bool = True) -> list[RankResult]:
    """Runs ``code`` (dedented) as ``world_size`` ranks; returns each rank's exit status and output.
    A rank that fails ends the others (``stop_on_failure=False``: for tests of a failing rank)."""
    script = write_script(code)
    port = str(free_port())
    try:
        procs = [start([sys.executable, script], base_env({"RANK": str(r), "LOCAL_RANK": str(r),
                                                           "WORLD_SIZE": str(world_size), "MASTER_PORT": port,
                                                           **(env or {})}))
                 for r in range(world_size)]
        results = wait_all(procs, timeout_s, stop_on_failure)
    finally:
        os.unlink(script)
    return [RankResult(r, *res) for r, res in enumerate(results)]
