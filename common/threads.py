"""The OpenMP wait policy every entry point sets before torch loads, and how many threads an
extraction uses.

With OpenMP's default policy an idle thread busy-waits for the next parallel region. Where
cores are shared (another job, DDP ranks, loader workers) the spinning threads take the cores
the working ones need: on a loaded 2-core machine ``Trainer.fit`` ran 8-25x slower and a
10-question extraction 3-8x slower (docs/BENCHMARKS.md, "Thread policy"). libgomp reads
the variable once, when torch loads it, so each entry point (``python -m extraction``,
``graphs``, ``training``, examples/ and benchmarks/) calls :func:`set_thread_policy` before
anything imports torch. This module imports nothing heavy for that reason.
"""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"


def set_thread_policy() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` and ``OPENBLAS_NUM_THREADS=1`` for this process and its
    children, unless the user set them.

    numpy's OpenBLAS (scikit-learn's probes, scipy) has a thread pool of its own that spins
    like OpenMP's default and has no passive policy. On a shared 2-core machine its second
    thread made the benchmark's probes about 35x slower (65 s against 1.8 s a probe, 90 fits,
    on the 5,000-trace fact store, docs/BENCHMARKS.md, "Thread policy"). Its matrices here
    are small (a few thousand rows), where one thread loses little on a quiet machine.
    torch's threads are separate and unaffected."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def free_cores(cores: int, load: float) -> int:
    """The cores left over by a one-minute load average of ``load``, at least one."""
    return max(1, min(cores, round(cores - load)))


def choose_threads() -> tuple[int, str]:
    """``(threads, why)`` for an extraction on this machine now; ``why`` is for the run's header.

    On a quiet machine every core speeds up the matrix products. On a shared one (load at or
    above the core count) a second thread waits at every parallel region for a core that another
    job holds: the run's CPU seconds grow and its wall time does not shrink, so one thread does
    the same work for less (docs/BENCHMARKS.md, "Extraction: thread settings").
    ``OMP_NUM_THREADS``, when set, is the user's choice and is kept.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        threads = int(os.environ["OMP_NUM_THREADS"])
        return threads, "OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    return free_cores(cores, load), f"load {load:.1f} on {cores} cores; OMP_NUM_THREADS sets it"
