"""Merges a re-run of some OpInfos into a full run's results.

When kernels change after a full run's snapshot was taken, re-running only the OpInfos they touch
(``python -m tests.opinfo.full_run --ops a,b,c --json rerun.json``) and merging the results keeps the
report true without another 40-minute run. The merged file records which OpInfos were re-run, on
which source, and why; ``coverage_report`` prints that under the run's own provenance.

Usage::

    python -m tests.opinfo.merge_rerun full.json rerun.json --why "what changed" --output merged.json
"""

from __future__ import annotations

import argparse
import json


def merge(full: dict, rerun: dict, why: str) -> dict:
    """The full run with every test of the re-run's OpInfos replaced by the re-run's."""
    ops = sorted({t["op"] for t in rerun["tests"]})
    replaced = set(ops)
    merged = dict(full)
    merged["tests"] = [t for t in full["tests"] if t["op"] not in replaced] + rerun["tests"]
    # Crashes and hangs of either run all stay on record.
    merged["incidents"] = full.get("incidents", []) + rerun.get("incidents", [])
    merged["seconds"] = full["seconds"] + rerun["seconds"]
    environment = dict(full["environment"])
    environment["rerun"] = {"source": rerun["environment"].get("source", "?"), "ops": ops, "why": why}
    merged["environment"] = environment
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("full", help="results of the full run (full_run --json)")
    p.add_argument("rerun", help="results of the re-run of some OpInfos")
    p.add_argument("--why", required=True, help="what changed after the full run's snapshot")
    p.add_argument("--output", required=True, help="merged results to write")
    args = p.parse_args()
    with open(args.full) as f:
        full = json.load(f)
    with open(args.rerun) as f:
        rerun = json.load(f)
    merged = merge(full, rerun, args.why)
    with open(args.output, "w") as f:
        json.dump(merged, f)
    print(f"{len(merged['environment']['rerun']['ops'])} OpInfos replaced; {len(merged['tests'])} tests in all")


if __name__ == "__main__":
    main()
