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
from extraction.store.verify import verify_store
from tests.helpers import REPO, questions_to_kill_mid_run, run_extraction, tiny_args

# Longer than a generation window, so a kill lands mid-run however fast the machine: within one
# window every batch is indexed within milliseconds, and 14 questions (one window) were once all
# indexed before the kill arrived.
N_QUESTIONS = questions_to_kill_mid_run(2)


def indexed_ok(store_dir) -> int:
    index = store_dir / "index.jsonl"
    if not index.exists():
        return 0
    return sum('"status": "ok"' in line for line in index.read_text().splitlines())


def kill_once_indexed(args: list[str], out, at_least: int) -> None:
    """Run ``python -m extraction ARGS`` and SIGKILL it once ``at_least`` traces are indexed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "extraction", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while indexed_ok(out) < at_least and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def test_sigkill_then_rerun_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    args = [*tiny_args(tiny_model_dir, out, n=N_QUESTIONS), "--batch-size", 2, "--shard-size", 2]
    args = [str(arg) for arg in args]
    kill_once_indexed(args, out, at_least=4)
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


def test_sigkill_with_the_default_shard_size_loses_at_most_a_batch(tiny_model_dir, tmp_path):
    """500 traces per shard (the default) and batches of 2: before, a kill anywhere before the
    end lost every trace; now each batch is on disk (a part file) and indexed when it ends."""
    out = tmp_path / "store"
    args = [*tiny_args(tiny_model_dir, out, n=N_QUESTIONS), "--batch-size", 2, "--shard-size", 500]
    args = [str(arg) for arg in args]
    kill_once_indexed(args, out, at_least=4)
    kept = TraceStore(out)
    assert 4 <= len(kept) < N_QUESTIONS
    assert all(".part" in path.name for path in kept.shard_files)  # no shard was full yet
    done = set(kept.question_ids)

    assert run_extraction(*args) == 0
    store = TraceStore(out)
    assert len(store) == N_QUESTIONS and done <= set(store.question_ids)
    assert [path.name for path in out.glob("*.safetensors")] == [
        path.name for path in store.shard_files
    ]
    assert len(store.shard_files) == 1 and ".part" not in store.shard_files[0].name
    assert verify_store(store.root)[1] == []
