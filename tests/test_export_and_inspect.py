"""The seed's pickle batches as an explicit export; `inspect` and `label` on a store."""

from __future__ import annotations

import numpy as np
import pytest

from common import UserError
from extraction.export import export_pickle, load_pickle_batch
from extraction.store import TraceStore
from extraction.store.trace import SEED_FIELDS
from tests.helpers import run_extraction


def test_export_writes_the_seed_batches(tiny_store, tmp_path):
    paths = export_pickle(tiny_store, tmp_path, batch_size=4)
    assert [p.name for p in paths] == [
        "tiny_llama0_demo_batch_0000.pkl",
        "tiny_llama0_demo_batch_0001.pkl",
    ]
    with pytest.raises(UserError, match="--trust_pickle"):
        load_pickle_batch(paths[0])
    records = load_pickle_batch(paths[0], trust_pickle=True) + load_pickle_batch(
        paths[1], trust_pickle=True
    )
    store = TraceStore(tiny_store)
    assert [r["question_id"] for r in records] == store.question_ids
    for record in records:
        assert tuple(record) == SEED_FIELDS
        seq_len = record["tokens"].shape[0]
        assert len(record["tokens_decoded"]) == seq_len
        assert len(record["hidden_states"]) == 3 and len(record["attentions"]) == 2
        assert record["hidden_states"][0].shape == (seq_len, 32)
        assert record["attentions"][1].shape == (4, seq_len, seq_len)
        assert record["attentions"][1].dtype == np.float32


def test_inspect_prints_the_seed_summary(tiny_store, capsys):
    assert run_extraction("inspect", tiny_store) == 0
    out = capsys.readouterr().out
    for line in (
        "Total examples processed: 6",
        "Total errors: 0",
        "Total shards saved: 2",
        "Hidden state shape (layer 0): (",
        "→ num_heads=4",
    ):
        assert line in out


def test_inspect_pickle_needs_trust(tiny_store, tmp_path, capsys):
    (path, *_) = export_pickle(tiny_store, tmp_path)
    assert run_extraction("inspect", path) == 2
    assert "--trust_pickle" in capsys.readouterr().err
    assert run_extraction("inspect", path, "--trust-pickle") == 0
    assert "6 traces" in capsys.readouterr().out


def test_label_rewrites_only_the_label_fields(tiny_store, tmp_path, capsys):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    before = TraceStore(copy).rows
    shards = {p.name: p.read_bytes() for p in copy.glob("*.safetensors")}
    assert run_extraction("label", copy, "--method", "alias_match") == 0
    assert "relabelled 6 traces" in capsys.readouterr().out
    after = TraceStore(copy).rows
    for qid, row in before.items():
        unchanged = {k: v for k, v in row.to_json().items() if not k.startswith("label")}
        fields = after[qid].to_json().items()
        assert {k: v for k, v in fields if not k.startswith("label")} == unchanged
        assert after[qid].label_method == "alias_match"
    assert shards == {p.name: p.read_bytes() for p in copy.glob("*.safetensors")}
