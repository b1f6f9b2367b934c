"""Hugging Face both ways: ``export-hf`` writes a ``datasets`` dataset that loads back, refuses an
incomplete or damaged store leaving nothing behind, and ``TraceStore`` opens a Hub dataset id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from datasets import load_dataset

from extraction.cli import main
from extraction.export_hf import DATA_FILE
from extraction.store import TraceStore
from extraction.store.hub import store_folder

REPO = Path(__file__).resolve().parents[1]


def export(store: Path, output: Path, *flags: str) -> int:
    return main(["export-hf", str(store), "--output", str(output), *flags])


def test_export_round_trips_through_datasets(synthetic_store, tmp_path):
    out = tmp_path / "answers"
    assert export(synthetic_store, out, "--blocks", "1") == 0
    answers = load_dataset(
        "parquet", data_files=str(out / DATA_FILE), cache_dir=str(tmp_path / "cache")
    )["train"]
    store = TraceStore(synthetic_store)
    assert answers["question_id"] == store.question_ids
    for row in answers:
        index = store.row(row["question_id"])
        assert (row["question"], row["answer"]) == (index.question, index.generated_answer_clean)
        assert (row["label"], row["label_method"]) == (index.label, index.label_method)
        stats = store.answer_stats(row["question_id"])
        assert torch.allclose(torch.tensor(row["token_logprobs"]), stats.logprobs.float())
        hidden = store.resid_post(row["question_id"], 1).float()[index.n_prompt_tokens :]
        assert torch.allclose(torch.tensor(row["block_1_mean"]), hidden.mean(0), atol=1e-6)
        assert torch.equal(torch.tensor(row["block_1_last"]), hidden[-1])
    assert "block_0_mean" not in answers.column_names

    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["license"] == "other"  # a question set of unknown licence
    assert metadata["hallugraph"]["model"] == store.manifest.settings.model
    assert metadata["hallugraph"]["counts"] == {
        "answers": 6, "hallucinated": 3, "correct": 3, "unlabelled": 0
    }  # fmt: skip
    assert metadata["hallugraph"]["decoding"]["num_beams"] == 1
    assert metadata["configs"][0]["data_files"][0]["path"] == DATA_FILE
    # The card's `configs` make the folder itself loadable.
    assert load_dataset(str(out), cache_dir=str(tmp_path / "cache"))["train"].num_rows == 6


def damage_a_shard(store: Path) -> str:
    shard = store / TraceStore(store).row("synthetic_0000").shard
    shard.write_bytes(shard.read_bytes()[:1000])
    return shard.name


def delete_a_shard(store: Path) -> str:
    shard = store / TraceStore(store).row("synthetic_0000").shard
    shard.unlink()
    return f"{shard}: missing"


def interrupt_the_run(store: Path) -> str:
    """The manifest asks for one question more than the index holds (a run cut short)."""
    manifest = json.loads((store / "manifest.json").read_text())
    asked = [*TraceStore(store).question_ids, "synthetic_0099"]
    manifest["requested"] = {"question_ids": asked}
    (store / "manifest.json").write_text(json.dumps(manifest))
    return "incomplete: 1 requested questions have no trace (first: synthetic_0099)"


@pytest.mark.parametrize(
    ("break_store", "flags", "named"),
    [
        (None, ["--blocks", "1", "5"], "no output hidden state of blocks [5]"),
        (damage_a_shard, [], None),
        (delete_a_shard, [], None),
        (interrupt_the_run, [], None),
        (lambda store: (store / "manifest.json").unlink() or "has no manifest.json", [], None),
    ],
)
def test_bad_store_is_one_line_and_leaves_nothing(
    synthetic_store, tmp_path, capsys, break_store, flags, named
):
    store = tmp_path / "store"
    shutil.copytree(synthetic_store, store)
    named = break_store(store) if break_store else named
    (tmp_path / "exports").mkdir()
    out = tmp_path / "exports" / "answers"
    assert export(store, out, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err
    assert not out.exists() and list((tmp_path / "exports").iterdir()) == []


def test_an_existing_output_is_refused(synthetic_store, tmp_path, capsys):
    out = tmp_path / "answers"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export(synthetic_store, out) == 2
    assert "exists; choose a new folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def hub_inspect(location: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "extraction", "inspect", location],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_hub_store_opens_from_the_cache_and_is_one_line_offline(synthetic_store, tmp_path):
    assert store_folder(synthetic_store) == synthetic_store  # a folder is read where it is
    cache = tmp_path / "hub"
    missing = hub_inspect("hf://datasets/someone/traces", cache)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: hf://datasets/someone/traces: not in the Hub cache")
    assert missing.stderr.count("\n") == 1

    # What `snapshot_download` leaves after a download: a ref and the snapshot's files.
    repo = cache / "datasets--someone--traces"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(synthetic_store, repo / "snapshots" / commit)
    cached = hub_inspect("hf://datasets/someone/traces", cache)
    assert cached.returncode == 0, cached.stderr
    assert str(repo / "snapshots" / commit) in cached.stdout
