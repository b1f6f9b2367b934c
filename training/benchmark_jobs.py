"""``--jobs N``: the benchmark's (train size, detector, seed) jobs shared among N processes.

Each process is the same ``benchmark`` command with ``--worker I/N``: it computes every N-th job
from the I-th on, at one torch thread, into the per-job cache; the first process then writes the
report from the cache, exactly as with one process (the results are the same: each job is
seeded). Everything the processes share is made before they start: the detector features (by
the first process, as always) and every graph cache the graph detectors and transfer stores
read, so no two processes build the same graphs. A process's log is
``OUTPUT/workers/worker{I}.log``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from common import UserError

log = logging.getLogger(__name__)


def parse_worker(jobs: int, worker: str | None) -> tuple[int, int] | None:
    """``(I, N)`` of ``--worker I/N``, or None; a bad ``--jobs`` or ``--worker`` is a one-line
    error."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if worker is None:
        return None
    index, _, count = worker.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise UserError(f"--worker {worker!r}: give I/N with 0 <= I < N (set by --jobs)")
    return int(index), int(count)


def share(jobs: list, worker: tuple[int, int] | None) -> list:
    """The jobs one process computes: all of them, or every N-th from the I-th."""
    if worker is None:
        return jobs
    index, count = worker
    return jobs[index::count]


def run_workers(argv: list[str], count: int, output: Path) -> None:
    """``count`` processes of this command with ``--worker I/N`` (what they share already
    built); a one-line error naming the log of a process that failed."""
    logs = output / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = []
    for index in range(count):
        path = logs / f"worker{index}.log"
        command = [sys.executable, "-m", "training", "benchmark", *argv]
        command += ["--jobs", "1", "--worker", f"{index}/{count}"]
        with path.open("w") as stream:
            started.append((path, subprocess.Popen(command, env=env, stdout=stream, stderr=stream)))
    log.info("%d benchmark processes, one thread each; logs in %s", count, logs)
    statuses = [(path, process.wait()) for path, process in started]
    for path, status in statuses:
        if status != 0:
            lines = path.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            errors = [line for line in lines if line.startswith("error:")]
            raise UserError(
                f"a benchmark process failed (exit {status}): {(errors or lines)[-1]} "
                f"(its log: {path}); rerun the same command to resume from the cache"
            )
