"""How many intra-op threads an extraction uses: the cores nobody else is using.

On a quiet machine every core speeds up the matrix products. On a shared one (load at or above
the core count) a second thread waits at every parallel region for a core that another job
holds: the run's CPU seconds grow and its wall time does not shrink, so one thread does the
same work for less (docs/BENCHMARKS.md, "Extraction: thread settings"). ``OMP_NUM_THREADS``, when
set, is the user's choice and is kept.
"""

from __future__ import annotations

import os


def free_cores(cores: int, load: float) -> int:
    """The cores left over by a one-minute load average of ``load``, at least one."""
    return max(1, min(cores, round(cores - load)))


def choose_threads() -> tuple[int, str]:
    """``(threads, why)`` for this machine now; ``why`` is for the run's header."""
    if os.environ.get("OMP_NUM_THREADS"):
        threads = int(os.environ["OMP_NUM_THREADS"])
        return threads, "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    return free_cores(cores, load), f"load {load:.1f} on {cores} cores; OMP_NUM_THREADS sets it"
