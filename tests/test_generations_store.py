"""Stores of several generations per question: trace ids, units, the consistency file."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from common import UserError
from extraction.consistency import eigen_block, sync_consistency
from extraction.labels import rougeL_similarities, sentence_embeddings
from extraction.store import IndexRow, TraceStore, trace_id
from extraction.store.consistency import (
    CONSISTENCY,
    consistency_name,
    read_consistency,
    write_consistency,
)
from extraction.synthetic import write_synthetic_store

K = 3


@pytest.fixture(scope="module")
def k_store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("k") / "store", 4, num_generations=K)


def test_trace_ids_name_question_and_generation():
    assert trace_id("q7", 0, 1) == "q7"
    assert [trace_id("q7", k, 3) for k in range(3)] == ["q7#0", "q7#1", "q7#2"]


def test_every_trace_is_addressed_by_question_and_generation(k_store):
    store = TraceStore(k_store)
    assert store.num_generations == K and len(store) == 4 * K
    assert store.units["synthetic_0002"] == [f"synthetic_0002#{k}" for k in range(K)]
    for unit, trace_ids in store.units.items():
        for generation, tid in enumerate(trace_ids):
            row = store.row(tid)
            assert (row.unit, row.source_question_id, row.generation) == (unit, unit, generation)
            trace = store[tid]
            assert (trace.question_id, trace.unit, trace.generation) == (tid, unit, generation)
    decoding = store.manifest.settings.decoding
    assert decoding.do_sample and decoding.num_generations == K and decoding.generations == K
    assert store.missing == []


def test_a_one_generation_store_reads_and_writes_as_before(synthetic_store):
    store = TraceStore(synthetic_store)
    assert store.num_generations == 1
    assert store.units == {qid: [qid] for qid in store.question_ids}
    first = json.loads((synthetic_store / "index.jsonl").read_text().splitlines()[0])
    assert "generation" not in first and first["source_question_id"] is None
    assert IndexRow.from_json(first).generation == 0
    with pytest.raises(UserError, match="one generation per question"):
        store.consistency(store.question_ids[0])


def test_consistency_record_matches_the_stored_answers_and_states(k_store):
    store = TraceStore(k_store)
    record = store.consistency("synthetic_0001")
    trace_ids = store.units["synthetic_0001"]
    answers = [store.row(tid).generated_answer_clean for tid in trace_ids]
    assert record.trace_ids == tuple(trace_ids) and record.answers == tuple(answers)
    assert record.num_generations == K
    torch.testing.assert_close(record.answer_embeddings, sentence_embeddings(answers))
    assert record.lexical_similarity.shape == (K, K)
    assert record.lexical_similarity[0].tolist() == pytest.approx(
        rougeL_similarities(answers[0], answers)
    )
    # Generation 1 repeats generation 0 in the synthetic store: identical answers agree fully.
    assert record.lexical_similarity[0, 1] == 1.0 and answers[0] == answers[1]
    assert record.eigen_block == eigen_block(store.manifest.model.num_layers, store.stored_blocks)
    assert record.eigen_hidden.dtype == torch.float32
    for k, tid in enumerate(trace_ids):
        torch.testing.assert_close(
            record.eigen_hidden[k], store.resid_post(tid, record.eigen_block)[-1].float()
        )


def test_eigen_block_is_the_middle_or_the_nearest_stored():
    assert eigen_block(30, range(30)) == 14  # INSIDE: hidden-state index (30 + 1) // 2
    assert eigen_block(18, range(18)) == 8
    assert eigen_block(30, [0, 10, 20, 29]) == 10
    assert eigen_block(30, [13, 15]) == 13  # a tie goes to the lower block


def test_a_stale_or_missing_record_is_rebuilt_without_the_model(k_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(k_store, root)
    records = read_consistency(root / CONSISTENCY)
    # As after a retried generation: the record names other traces than the store has.
    stale = records["synthetic_0000"]
    records["synthetic_0000"] = type(stale)(**{**vars(stale), "trace_ids": stale.trace_ids[:2]})
    del records["synthetic_0003"]
    write_consistency(root / CONSISTENCY, records)
    store = TraceStore(root)
    with pytest.raises(UserError, match="out of date"):
        store.consistency("synthetic_0000")
    with pytest.raises(UserError, match="missing"):
        TraceStore(root).consistency("synthetic_0003")
    assert sync_consistency(TraceStore(root), ["synthetic_0000", "synthetic_0003"]) == 2
    assert sync_consistency(TraceStore(root), TraceStore(root).units) == 0
    fresh = TraceStore(root).consistency("synthetic_0000")
    assert fresh.trace_ids == tuple(TraceStore(root).units["synthetic_0000"])


def test_a_damaged_consistency_file_is_one_line(k_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(k_store, root)
    (root / CONSISTENCY).write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="damaged consistency file"):
        TraceStore(root).consistency("synthetic_0000")


def test_the_record_matching_the_traces_wins_across_rank_files(k_store, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(k_store, root)
    records = read_consistency(root / CONSISTENCY)
    fresh = records["synthetic_0001"]
    write_consistency(root / consistency_name(rank=1), {"synthetic_0001": fresh})
    # consistency.safetensors sorts after consistency.rank1: "last file wins" would pick this.
    records["synthetic_0001"] = type(fresh)(**{**vars(fresh), "trace_ids": fresh.trace_ids[:1]})
    write_consistency(root / CONSISTENCY, records)
    assert TraceStore(root).consistency("synthetic_0001").trace_ids == fresh.trace_ids
