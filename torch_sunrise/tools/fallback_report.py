"""Run a Python script and report which operators fell back to the CPU.

Usage: ``sunrise-fallback-report script.py [args...]`` or
``python -m torch_sunrise.tools.fallback_report script.py [args...]``.
"""

from __future__ import annotations

import os
import runpy
import sys


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
        stats = torch_sunrise.fallback_times()
        print("\n== sunrise CPU fallback report ==", file=sys.stderr)
        if not stats:
            print("no operator fell back to the CPU", file=sys.stderr)
        else:
            print(f"{'operator':<50} {'calls':>8} {'seconds':>10}", file=sys.stderr)
            for name, (calls, seconds) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
                print(f"{name:<50} {calls:>8} {seconds:>10.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
