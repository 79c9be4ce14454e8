"""How a workload's threads shared the cores: each thread's running and waiting time.

Linux keeps, per thread, the time it ran and the time it was runnable but waited
for a core (/proc/<pid>/task/<tid>/schedstat). Taken around a workload, they show
whether the threads had the cores to themselves or queued for them, and which
ones spun: a thread that ran the whole time while doing little useful work.
"""

from __future__ import annotations

import os
import threading

# thread id -> (name, ns running, ns waiting for a core)
Times = dict[int, tuple[str, int, int]]


def thread_times() -> Times:
    """This process's threads, now."""
    times = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                running, waiting, _ = (int(v) for v in f.read().split())
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        times[int(tid)] = (name, running, waiting)
    return times


def spent(before: Times, after: Times) -> Times:
    """What each thread spent between two `thread_times()`; threads started meanwhile count from 0."""
    return {tid: (name, running - before.get(tid, (name, 0, 0))[1], waiting - before.get(tid, (name, 0, 0))[2])
            for tid, (name, running, waiting) in after.items()}


def describe(spent_many: Times, spent_one: Times, per: int, unit: str) -> str:
    """One line: each thread's running / waiting ms per `unit`, from a workload of 1 + `per` units
    minus one of 1 unit (so that a fixed part, a prompt's prefill say, cancels out); threads that ran
    less than 0.05 ms per unit are left out."""
    main = threading.main_thread().native_id
    parts = []
    for tid, (name, running, waiting) in sorted(spent_many.items(), key=lambda kv: -kv[1][1]):
        _, running_one, waiting_one = spent_one.get(tid, (name, 0, 0))
        # Differences of two runs: clamped, since noise can make a small one negative.
        ran, waited = (max(0.0, (v - one) / 1e6 / per) for v, one in ((running, running_one), (waiting, waiting_one)))
        if ran >= 0.05:
            label = "main thread" if tid == main else f"{name}[{tid}]"
            parts.append(f"{label} {ran:.1f} / {waited:.1f}")
    return f"ms running / waiting for a core, per {unit}: " + ", ".join(parts)
