"""Run a Python script and report the operators that had no sunrise kernel, by how they ran.

Usage: ``sunrise-fallback-report script.py [args...]`` or
``python -m torch_sunrise.tools.fallback_report script.py [args...]``.

Operators with a sunrise kernel (native) are not listed. The others ran ATen's CPU kernel either
queued as device work (the host did not wait) or synchronously (each call waited for the device),
listed with the reason they could not be queued.
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import TextIO


def _print_report(out: TextIO) -> None:
    """Prints the queued and the synchronous fallback calls since the counters were reset."""
    import torch_sunrise

    queued = torch_sunrise.queued_fallback_stats()
    sync = torch_sunrise.fallback_times()
    reasons = torch_sunrise.fallback_reasons()
    print("\n== sunrise CPU fallback report ==", file=out)
    if not queued and not sync:
        print("every operator ran a sunrise kernel", file=out)
        return
    if queued:
        print("queued as device work (CPU kernel on the stream; no wait):", file=out)
        print(f"  {'operator':<50} {'calls':>8}", file=out)
        for name, calls in sorted(queued.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<50} {calls:>8}", file=out)
    if sync:
        print("synchronous (each call waited for the device; reason):", file=out)
        print(f"  {'operator':<50} {'calls':>8} {'seconds':>10}  reason", file=out)
        for name, (calls, seconds) in sorted(sync.items(), key=lambda kv: -kv[1][1]):
            print(f"  {name:<50} {calls:>8} {seconds:>10.4f}  {reasons.get(name, '')}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Run the script given on the command line, then print per-op fallback counts and time."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    os.environ.setdefault("SUNRISE_FALLBACK", "silent")
    import torch_sunrise

    torch_sunrise.set_fallback_mode(os.environ["SUNRISE_FALLBACK"])
    sys.argv = args
    try:
        runpy.run_path(args[0], run_name="__main__")
    finally:
        _print_report(sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
