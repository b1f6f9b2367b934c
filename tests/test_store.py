"""Trace store: round trip, lazy reads, crash leftovers, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from common import UserError
from extraction.store import TraceStore, TraceWriter
from extraction.store.layout import pack_causal, unpack_causal
from tests.helpers import MANIFEST, make_trace, manifest, write


def test_pack_roundtrip():
    attention = make_trace("a", seq_len=6).attentions[0]
    torch.testing.assert_close(unpack_causal(pack_causal(attention), 6), attention)


def test_round_trip_and_lazy_single_layer(tmp_path):
    traces = [make_trace(f"q{i}", seq_len=4 + i) for i in range(5)]
    write(tmp_path, traces)
    store = TraceStore(tmp_path)
    assert store.question_ids == [t.question_id for t in traces]
    assert [p.name for p in store.shard_files] == [
        f"m_d_shard_{i:04d}.safetensors" for i in range(3)
    ]
    for original in traces:
        loaded = store[original.question_id]
        assert loaded.tokens_decoded == original.tokens_decoded
        assert torch.equal(loaded.tokens, original.tokens)
        for block, attention in original.attentions.items():
            torch.testing.assert_close(
                loaded.attentions[block].float(), attention, atol=1e-3, rtol=0
            )
            assert store.attention(original.question_id, block).dtype == torch.float16
        torch.testing.assert_close(
            store.resid_post(original.question_id, 1).float(), original.hidden_states[2],
            atol=2e-3, rtol=1e-3,
        )  # fmt: skip
        assert loaded.label == 0 and loaded.gold == original.gold
    with safe_open(str(store.shard_files[0]), "pt") as handle:
        assert handle.get_slice("q0/attentions.1").get_shape() == [2, 10]  # packed 4*5/2


def test_half_written_index_line_and_orphan_shard_are_recovered(tmp_path):
    write(tmp_path, [make_trace(f"q{i}") for i in range(4)])
    index = tmp_path / "index.jsonl"
    index.write_text(index.read_text() + '{"question_id": "q9", "sta')
    (tmp_path / "m_d_shard_0002.safetensors").write_bytes(b"orphan: written, never indexed")
    (tmp_path / ".m_d_shard_0003.safetensors.tmp").write_bytes(b"interrupted write")
    assert len(TraceStore(tmp_path)) == 4  # the torn line is ignored
    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d") as writer:
        assert writer.done_ids == {"q0", "q1", "q2", "q3"}
        writer.add(make_trace("q4"))
    store = TraceStore(tmp_path)
    assert store.question_ids == ["q0", "q1", "q2", "q3", "q4"]
    assert store.rows["q4"].shard == "m_d_shard_0002.safetensors"  # orphan overwritten
    assert not list(tmp_path.glob(".*.tmp"))
    assert all(json.loads(line) for line in index.read_text().splitlines())


def test_other_settings_are_refused_and_overwrite_replaces(tmp_path):
    write(tmp_path, [make_trace("q0")])
    other = manifest("other")
    with pytest.raises(UserError, match=r"other settings \(model: .m. → .other.\).*--overwrite"):
        TraceWriter(tmp_path, other, file_prefix="m_d")
    with TraceWriter(tmp_path, other, file_prefix="m_d", overwrite=True) as writer:
        assert writer.done_ids == set()
    assert len(TraceStore(tmp_path)) == 0
    assert TraceStore(tmp_path).manifest.settings.model == "other"


def test_a_second_writer_is_refused_while_the_first_holds_the_store(tmp_path):
    with (
        TraceWriter(tmp_path, MANIFEST, file_prefix="m_d"),
        pytest.raises(UserError, match="another process is writing"),
    ):
        TraceWriter(tmp_path, MANIFEST, file_prefix="m_d")
    TraceWriter(tmp_path, MANIFEST, file_prefix="m_d").__exit__(None, None, None)


def test_errors_are_recorded_and_skipped_unless_retried(tmp_path):
    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d") as writer:
        writer.add_error("bad", "q?", {}, "too long")
    assert TraceStore(tmp_path).errors[0].error == "too long"
    assert "bad" in TraceWriter(tmp_path, MANIFEST, file_prefix="m_d").done_ids
    assert (
        "bad" not in TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", retry_errors=True).done_ids
    )


def test_missing_layer_and_missing_store_are_clear(tmp_path):
    with pytest.raises(UserError, match="not a trace store"):
        TraceStore(tmp_path / "nowhere")
    write(tmp_path, [make_trace("q0")])
    with pytest.raises(UserError, match="was not stored"):
        TraceStore(tmp_path).attention("q0", 7)
    with pytest.raises(KeyError):
        TraceStore(tmp_path).tokens("unknown")


def test_shard_byte_cap(tmp_path):
    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_shard_bytes=1) as writer:
        for i in range(3):
            writer.add(make_trace(f"q{i}"))
    assert len(TraceStore(tmp_path).shard_files) == 3
