"""docs/SCALING.md's failure story, on the tiny model: a rank killed mid-run (SIGKILL, as when
its node dies) loses only its unfinished batch; the other rank finishes its share, and rerunning
the same command with another number of processes completes the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from extraction.store import TraceStore
from extraction.store.verify import verify_store
from tests.helpers import REPO, questions_to_kill_mid_run, run_extraction, tiny_args


def rank_process(args: list[str], rank: int, world_size: int) -> subprocess.Popen:
    """One rank as torchrun would start it (the extraction reads only these variables)."""
    env = {
        **os.environ,
        "RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_RANK": str(rank),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "extraction", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(index, prefix: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if index.exists() and prefix in index.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {prefix} rows in {index} after {timeout} s")


@pytest.mark.multiprocess
def test_a_killed_rank_is_resumed_by_a_rerun_with_fewer_processes(tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    n = 2 * questions_to_kill_mid_run(3)  # rank 1 is still generating when it is killed
    args = [str(arg) for arg in tiny_args(tiny_model_dir, out, n=n)]

    doomed = rank_process(args, rank=1, world_size=2)
    wait_for_rows(out / "index.jsonl", "_rank1_shard_")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    survivor = rank_process(args, rank=0, world_size=2)
    assert survivor.wait(timeout=300) == 0, survivor.stderr.read()[-2000:]

    partial = TraceStore(out)
    assert n // 2 <= len(partial) < n  # rank 0's half, and what rank 1 committed before it died
    assert verify_store(partial.root)[1] == []

    assert run_extraction(*args) == 0  # the same command, one process
    store = TraceStore(out)
    assert len(store) == n and not store.missing
    assert verify_store(store.root)[1] == []
    assert len((out / "index.jsonl").read_text().splitlines()) == n
    for trace in store:
        assert trace.attentions[1].shape[-1] == trace.seq_len
