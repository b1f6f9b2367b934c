"""The OpenMP wait policy every entry point sets before torch loads.

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
    """``OMP_WAIT_POLICY=PASSIVE`` for this process and its children, unless the user set it."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
