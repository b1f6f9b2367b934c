"""``--num_generations 3`` on the packaged SmolLM2-135M (slow): real beam answers as generation 0,
real samples, reproducible across a resume and a per-trace retry."""

from __future__ import annotations

import json
import shutil

import pytest

from extraction.store import TraceStore
from extraction.store.integrity import sealed
from tests.helpers import run_extraction

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

K = 3
N = 3


def smollm2_args(out, *extra) -> list:
    return [
        "--model", "smollm2_135M", "--dataset", "demo", "--num-samples", N, "--output-dir", out,
        "--max-new-tokens", 24, "--batch-size", N, *extra,
    ]  # fmt: skip


SAMPLING = ["--num-generations", K, "--do-sample"]


def answers_of(store: TraceStore) -> dict[str, tuple[str, list[int]]]:
    return {
        tid: (store.row(tid).generated_answer_clean, store.tokens(tid).tolist())
        for tid in store.question_ids
    }


def test_smollm2_generations_resume_and_retry(tmp_path, capsys):
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert run_extraction(*smollm2_args(single)) == 0
    assert run_extraction(*smollm2_args(multi, *SAMPLING)) == 0
    one, store = TraceStore(single), TraceStore(multi)
    assert len(store) == N * K and not store.errors
    samples = set()
    for qid, trace_ids in store.units.items():
        assert trace_ids == [f"{qid}#{k}" for k in range(K)]
        beam = store.row(trace_ids[0])
        assert beam.generated_answer_clean == one.row(qid).generated_answer_clean
        assert store.tokens(trace_ids[0]).tolist() == one.tokens(qid).tolist()
        samples |= {store.row(tid).generated_answer_clean for tid in trace_ids[1:]}
        record = store.consistency(qid)
        assert record.eigen_block == 14 and record.eigen_hidden.shape == (K, 576)
    assert len(samples) > 1  # sampled, not K copies of one answer

    # A crash lost the last question's samples; the resume runs one question per batch.
    resumed = tmp_path / "resumed"
    shutil.copytree(multi, resumed)
    index = resumed / "index.jsonl"
    index.write_text("".join(index.read_text().splitlines(keepends=True)[: -(K - 1)]))
    assert run_extraction(*smollm2_args(resumed, *SAMPLING, "--batch-size", 1)) == 0
    assert answers_of(TraceStore(resumed)) == answers_of(store)

    # One sample failed: --retry-errors makes that trace alone again, the same.
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    failed = f"{rows[0]['source_question_id']}#2"
    for row in rows:
        if row["question_id"] == failed:
            row.update(status="error", error="RuntimeError: out of memory", shard=None)
    rows = [sealed({k: v for k, v in row.items() if k != "row_sha256"}) for row in rows]
    index.write_text("".join(json.dumps(row) + "\n" for row in rows))
    capsys.readouterr()
    assert run_extraction(*smollm2_args(resumed, *SAMPLING, "--retry-errors")) == 0
    assert "Total examples processed: 1\n" in capsys.readouterr().out
    retried = TraceStore(resumed)
    assert answers_of(retried) == answers_of(store) and not retried.errors
    unit = rows[0]["source_question_id"]
    assert retried.consistency(unit).answers == store.consistency(unit).answers
