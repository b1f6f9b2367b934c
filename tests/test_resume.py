"""Kill a real extraction with SIGKILL mid-run, rerun the same command: nothing lost, nothing
twice, no corrupt shard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from safetensors import safe_open

from extraction.store import TraceStore
from tests.conftest import REPO, run_extraction, tiny_args

N_QUESTIONS = 14


def indexed_ok(store_dir) -> int:
    index = store_dir / "index.jsonl"
    if not index.exists():
        return 0
    return sum('"status": "ok"' in line for line in index.read_text().splitlines())


def test_sigkill_then_rerun_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    args = [*tiny_args(tiny_model_dir, out, n=N_QUESTIONS), "--batch-size", 2, "--shard-size", 2]
    args = [str(arg) for arg in args]
    process = subprocess.Popen(
        [sys.executable, "-m", "extraction", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while indexed_ok(out) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = indexed_ok(out)
    assert 4 <= killed_at < N_QUESTIONS

    assert run_extraction(*args) == 0

    lines = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    ids = [row["question_id"] for row in lines]
    assert len(ids) == len(set(ids)) == N_QUESTIONS
    store = TraceStore(out)
    assert len(store) == N_QUESTIONS
    for shard in out.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                handle.get_tensor(key)
    assert {p.name for p in out.glob("*.safetensors")} == {p.name for p in store.shard_files}
    for trace in store:
        assert trace.attentions[0].shape[-1] == trace.seq_len
