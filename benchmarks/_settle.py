"""Measuring CPU eager in the process that also ran sunrise work, fairly.

A device thread keeps its OpenMP team for 100 ms after its queue empties
(README, "Threads"). While that team and the host's both live, libgomp counts
more threads than cores and wakes every region's workers through the kernel,
which slows CPU eager work; a CPU measurement taken right after device work
would start slowed. Waiting a little longer than that lets the team go.
"""

from __future__ import annotations

import time

SETTLE_S = 0.2


def settle_before_cpu() -> None:
    """Let the device threads release their OpenMP teams before timing CPU eager work."""
    time.sleep(SETTLE_S)
