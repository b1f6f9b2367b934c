"""Two ranks under torchrun write one store: every question once, shards per rank."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from extraction.store import TraceStore
from tests.helpers import REPO, run_extraction, tiny_args


@pytest.mark.multiprocess
def test_torchrun_two_ranks_share_one_store(tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    args = [str(arg) for arg in tiny_args(tiny_model_dir, out, n=9)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launcher, "-m", "extraction", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0: 5 processed" in done.stdout and "rank 1: 4 processed" in done.stdout
    store = TraceStore(out)
    assert len(store) == 9
    lines = (out / "index.jsonl").read_text().splitlines()
    assert len(lines) == 9
    assert {p.name.split("_shard_")[0][-5:] for p in store.shard_files} == {"rank0", "rank1"}
    for trace in store:
        assert trace.attentions[1].shape[-1] == trace.seq_len
    # A single process resumes the merged store: nothing left to do.
    assert run_extraction(*args) == 0
    assert len((out / "index.jsonl").read_text().splitlines()) == 9
