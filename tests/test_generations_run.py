"""``--num_generations K``: options, per-trace ids, resume and retry, inspect, export (tiny model;
the real-model check is ``test_generations_smollm2.py``)."""

from __future__ import annotations

import json
import shutil

import pytest

from extraction.agreement import agreement
from extraction.cli import main
from extraction.export import export_pickle, load_pickle_batch
from extraction.store import TraceStore
from extraction.store.consistency import CONSISTENCY
from tests.helpers import assert_one_line_errors, run_extraction, tiny_args

K = 3
SAMPLING = ["--num-generations", K, "--do-sample", "--temperature", 1.0, "--seed", 7]


@pytest.fixture(scope="module")
def k_store(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("k_store") / "store"
    assert run_extraction(*tiny_args(tiny_model_dir, out, n=4), *SAMPLING) == 0
    return out


def test_sampling_options_are_checked_before_the_model_loads(capsys, tmp_path):
    out = tmp_path / "never"
    base = f"--model no_such_model --output-dir {out}"
    assert_one_line_errors(
        main,
        [
            f"{base} --num-generations 0",
            f"{base} --num-generations 3",
            f"{base} --do-sample",
            f"{base} --num-generations 3 --do-sample --temperature 0",
            f"{base} --num-generations 3 --do-sample --top-p 0",
            f"{base} --num-generations 3 --do-sample --top-p 1.5",
        ],
        capsys,
    )
    assert not out.exists()


def test_each_generation_is_a_trace_of_its_own(k_store, tiny_model_dir, tmp_path):
    store = TraceStore(k_store)
    assert store.num_generations == K and len(store) == 4 * K and not store.errors
    decoding = store.manifest.settings.decoding
    assert (decoding.do_sample, decoding.temperature, decoding.seed) == (True, 1.0, 7)
    single = tmp_path / "single"
    assert run_extraction(*tiny_args(tiny_model_dir, single, n=4)) == 0
    one = TraceStore(single)
    for qid, trace_ids in store.units.items():
        assert trace_ids == [f"{qid}#{k}" for k in range(K)]
        rows = [store.row(tid) for tid in trace_ids]
        assert [row.generation for row in rows] == list(range(K))
        assert {row.source_question_id for row in rows} == {qid}
        # Generation 0 is the beam-search answer of a one-generation run, token for token.
        assert rows[0].generated_answer_clean == one.row(qid).generated_answer_clean
        assert store.tokens(trace_ids[0]).tolist() == one.tokens(qid).tolist()
        for tid in trace_ids:
            trace = store[tid]
            assert trace.attentions[0].shape[-1] == trace.seq_len == store.row(tid).seq_len
            assert len(trace.token_logprobs) == trace.n_answer_tokens
            assert trace.label_method == one.row(qid).label_method
        record = store.consistency(qid)
        assert record.trace_ids == tuple(trace_ids) and record.answer_embeddings.shape == (K, 384)
        assert record.eigen_hidden.shape == (K, store.manifest.model.hidden_size)


def answers_of(store: TraceStore) -> dict[str, tuple[str, list[int]]]:
    return {
        tid: (store.row(tid).generated_answer_clean, store.tokens(tid).tolist())
        for tid in store.question_ids
    }


def test_a_resume_draws_the_same_samples_whatever_the_batch(k_store, tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    shutil.copytree(k_store, out)
    lines = (out / "index.jsonl").read_text().splitlines(keepends=True)
    # As after a crash: the last traces never reached the index (sample 2 of the last question,
    # then all of the one before it); the consistency file is left as it was.
    (out / "index.jsonl").write_text("".join(lines[: -K - 1]))
    args = [*tiny_args(tiny_model_dir, out, n=4), *SAMPLING, "--batch-size", 1]
    assert run_extraction(*args) == 0
    resumed, first = TraceStore(out), TraceStore(k_store)
    assert answers_of(resumed) == answers_of(first)
    for qid in resumed.units:
        assert resumed.consistency(qid).answers == first.consistency(qid).answers


def test_retry_errors_reruns_only_the_failed_trace(k_store, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "store"
    shutil.copytree(k_store, out)
    index = out / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    failed = "demo_0002#1"
    for row in rows:
        if row["question_id"] == failed:
            row.update(status="error", error="RuntimeError: out of memory", shard=None)
    index.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # The store's consistency record of demo_0002 now names a trace it no longer has.
    with pytest.raises(Exception, match="out of date"):
        TraceStore(out).consistency("demo_0002")
    args = [*tiny_args(tiny_model_dir, out, n=4), *SAMPLING]
    assert run_extraction(*args) == 0  # without --retry-errors the error stays
    assert [row.question_id for row in TraceStore(out).errors] == [failed]
    capsys.readouterr()
    assert run_extraction(*args, "--retry-errors") == 0
    assert "Total examples processed: 1\n" in capsys.readouterr().out
    store = TraceStore(out)
    assert answers_of(store) == answers_of(TraceStore(k_store)) and not store.errors
    assert store.consistency("demo_0002").trace_ids == tuple(store.units["demo_0002"])


def test_a_resume_with_other_sampling_is_refused(k_store, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "store"
    shutil.copytree(k_store, out)
    args = [*tiny_args(tiny_model_dir, out, n=4), *SAMPLING]
    assert run_extraction(*args, "--seed", 8) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "decoding" in err
    assert run_extraction(*tiny_args(tiny_model_dir, out, n=4)) == 2


def test_inspect_reports_the_agreement_of_the_answers(k_store, capsys):
    store = TraceStore(k_store)
    found = agreement(store)
    assert (found.questions, found.complete, found.with_records) == (4, 4, 4)
    rows = [[store.row(tid) for tid in tids] for tids in store.units.values()]
    pairs = [(r[0].label, row.label) for r in rows for row in r[1:]]
    assert found.label_agreement == pytest.approx(sum(a == b for a, b in pairs) / len(pairs))
    distinct = [len({row.generated_answer_clean.strip().lower() for row in r}) for r in rows]
    assert found.distinct_answers == pytest.approx(sum(distinct) / len(distinct))
    assert 0 <= found.lexical_similarity <= 1
    assert main(["inspect", str(k_store)]) == 0
    out = capsys.readouterr().out
    assert f"{K} generations per question" in out and "Samples labelled as generation 0" in out


def test_export_carries_question_and_generation(k_store, tmp_path):
    (path,) = export_pickle(k_store, tmp_path / "pickle")
    records = load_pickle_batch(path, trust_pickle=True)
    store = TraceStore(k_store)
    assert [(r["question_id"], r["generation"]) for r in records] == [
        (store.row(tid).unit, store.row(tid).generation) for tid in store.question_ids
    ]
    assert (k_store / CONSISTENCY).exists()


def test_a_question_that_fails_is_an_error_row_per_generation(tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    args = [*tiny_args(tiny_model_dir, out, n=6), *SAMPLING, "--max-total-tokens", 31]
    assert run_extraction(*args) == 0
    store = TraceStore(out)
    failed: dict[str, list[int]] = {}
    for row in store.errors:
        assert row.error.startswith("too long:")
        assert row.question_id == f"{row.source_question_id}#{row.generation}"
        failed.setdefault(row.unit, []).append(row.generation)
    assert failed and all(sorted(gens) == list(range(K)) for gens in failed.values())
    assert set(store.units).isdisjoint(failed) and len(store.units) + len(failed) == 6
