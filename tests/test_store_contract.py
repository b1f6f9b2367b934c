"""The store's typed contract: the manifest, index rows and trace records as frozen dataclasses,
role-named tensors, and stores written by older writers."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from common import UserError
from extraction.store import (
    AnswerStats,
    IndexRow,
    Manifest,
    TraceStore,
    TraceWriter,
    rewrite_labels,
)
from extraction.store.integrity import sealed
from extraction.store.verify import verify_store
from tests.helpers import MANIFEST, make_trace, manifest, write


@pytest.fixture
def store(tmp_path) -> TraceStore:
    write(tmp_path, [make_trace(f"q{i}", seq_len=5 + i) for i in range(3)])
    return TraceStore(tmp_path)


def test_manifest_and_rows_are_typed_and_frozen(store):
    assert store.manifest.model.hidden_size == 4 and store.manifest.model.num_heads == 2
    assert store.manifest.settings.attention_blocks == (0, 1)
    assert store.manifest.settings.file_prefix == "m_d"
    row = store.row("q1")
    assert isinstance(row, IndexRow) and row.ok and row.label == 0 and row.seq_len == 6
    assert (row.n_prompt_tokens, row.n_answer_tokens) == (3, 3)
    assert row.gold == make_trace("q1", seq_len=6).gold
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.label = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.manifest.model.hidden_size = 8


def test_role_named_tensors_hold_the_one_index_convention(store):
    trace = make_trace("q2", seq_len=7)
    assert store.stored_blocks == trace.stored_blocks == [0, 1]

    def close(stored: torch.Tensor, original: torch.Tensor) -> None:
        torch.testing.assert_close(stored.float(), original, atol=2e-3, rtol=1e-3)  # fp16

    for block in (0, 1):
        assert torch.equal(trace.resid_post(block), trace.hidden_states[block + 1])
        close(store.resid_post("q2", block), trace.hidden_states[block + 1])
        close(store.attention("q2", block), trace.attention(block))
    close(store.embeddings("q2"), trace.hidden_states[0])
    assert torch.equal(trace.embeddings, trace.hidden_states[0])
    record = store.record("q2")
    assert record.tokens_decoded == tuple(trace.tokens_decoded) and record.sampled_answers == ()
    assert record.hidden_state_indices == (0, 1, 2) and record.attention_indices == (0, 1)


def test_answer_stats_read_no_layer(store, monkeypatch):
    kinds = []
    read = TraceStore._tensor

    def spy(self, question_id, kind, index=None):
        kinds.append(kind)
        return read(self, question_id, kind, index)

    monkeypatch.setattr(TraceStore, "_tensor", spy)
    stats = store.answer_stats("q0")
    trace = make_trace("q0", seq_len=5)
    assert isinstance(stats, AnswerStats) and kinds == ["token_logprobs", "token_entropy"]
    assert torch.equal(stats.logprobs, trace.token_logprobs.float())
    assert torch.equal(stats.entropy, trace.token_entropy.float())


def test_a_store_of_the_first_writer_still_reads(store):
    """The first writer (the 817-question TruthfulQA store) wrote no checksums and no requested
    ids; a field a reader does not know (a newer writer's) is ignored."""
    index = store.root / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    old = {"shard_sha256", "shard_bytes", "trace_sha256", "row_sha256", "error"}
    rows = [{k: v for k, v in row.items() if k not in old} | {"from_the_future": 1} for row in rows]
    index.write_text("".join(json.dumps(row) + "\n" for row in rows))
    old_manifest = json.loads((store.root / "manifest.json").read_text())
    old_manifest["settings"].pop("decoding", None)
    (store.root / "manifest.json").write_text(json.dumps(old_manifest | {"later": True}))

    reopened = TraceStore(store.root)
    assert reopened.row("q0").shard_sha256 is None and reopened.requested == []
    assert reopened.manifest.settings.decoding.num_beams is None
    # headers and sizes only, as for any unchecked store
    assert verify_store(reopened.root)[1] == []
    assert reopened["q1"].label == 0 and reopened.resid_post("q1", 1).shape == (6, 4)


def test_relabelling_keeps_fields_this_reader_does_not_know(store):
    index = store.root / "index.jsonl"
    rows = [
        sealed(json.loads(line) | {"from_the_future": 7}) for line in index.read_text().splitlines()
    ]
    index.write_text("".join(json.dumps(row) + "\n" for row in rows))
    reopened = TraceStore(store.root)
    rewrite_labels(reopened, {"q1": {"label": 1, "label_method": "judge", "label_score": 0.9}})
    assert reopened.row("q1").label == 1 and reopened.row("q0").label == 0
    kept = [json.loads(line) for line in index.read_text().splitlines()]
    assert all(row["from_the_future"] == 7 for row in kept)
    assert TraceStore(store.root).row("q1").label_method == "judge"


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("model", "hidden_size"), "model lacks 'hidden_size'"),
        (("settings",), "settings is missing"),
    ],
)
def test_a_manifest_without_what_a_stage_needs_is_a_one_line_error(store, drop, named):
    data = json.loads((store.root / "manifest.json").read_text())
    *path, key = drop
    section = data
    for part in path:
        section = section[part]
    del section[key]
    (store.root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=f"manifest.json {named}"):
        TraceStore(store.root)


def test_the_writer_checks_the_manifest_before_writing(tmp_path):
    incomplete = manifest()
    del incomplete["settings"]["attention_blocks"]
    with pytest.raises(UserError, match="settings lacks 'attention_blocks'"):
        TraceWriter(tmp_path / "store", incomplete, file_prefix="m_d")
    assert not (tmp_path / "store").exists()
    assert Manifest.from_json(MANIFEST).settings.hidden_state_layers == (0, 1, 2)


def test_error_rows_are_rows_without_a_trace(tmp_path):
    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d") as writer:
        writer.add_error("bad", "q?", {"aliases": ["x"]}, "too long")
    store = TraceStore(tmp_path)
    (row,) = store.errors
    assert not row.ok and row.error == "too long" and row.seq_len is None and row.shard is None
    assert "bad" not in store
    with pytest.raises(KeyError, match="no trace for question 'bad'"):
        store.row("bad")


def test_the_writer_serialises_a_manifest_that_reads_back_the_same(tmp_path):
    built = Manifest.from_json(MANIFEST)
    with TraceWriter(tmp_path, built, file_prefix="m_d"):
        pass
    assert TraceStore(tmp_path).manifest == built
    assert Manifest.from_json(built.to_json()) == built


def test_a_manifest_object_resumes_a_store_written_as_a_dict_with_nulls(tmp_path):
    """None and a missing key mean the same (older writers wrote ``"revision": null``)."""
    written = json.loads(json.dumps(MANIFEST))
    beam = {"num_beams": 1, "do_sample": False, "early_stopping": True, "stop_strings": ["\n"]}
    written["settings"].update(revision=None, min_attention=None, decoding=beam)
    with TraceWriter(tmp_path, written, file_prefix="m_d") as writer:
        writer.add(make_trace("q0"))
    with TraceWriter(tmp_path, Manifest.from_json(written), file_prefix="m_d") as writer:
        assert writer.done_ids == {"q0"}


def test_a_store_written_before_the_rename_reads_and_resumes(tmp_path):
    """Stores written before issue 22 name the stored blocks ``attention_layers``."""
    old = json.loads(json.dumps(MANIFEST))
    old["settings"]["attention_layers"] = old["settings"].pop("attention_blocks")
    with TraceWriter(tmp_path, old, file_prefix="m_d") as writer:
        writer.add(make_trace("q0"))
    assert "attention_layers" in json.loads((tmp_path / "manifest.json").read_text())["settings"]
    store = TraceStore(tmp_path)
    assert store.manifest.settings.attention_blocks == (0, 1) and store.stored_blocks == [0, 1]
    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d") as writer:
        assert writer.done_ids == {"q0"}  # today's manifest resumes the old store
    other = {**MANIFEST, "settings": {**MANIFEST["settings"], "attention_blocks": [1]}}
    with pytest.raises(UserError, match="attention_blocks"):
        TraceWriter(tmp_path, other, file_prefix="m_d")
