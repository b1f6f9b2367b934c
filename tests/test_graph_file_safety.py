"""A graph folder from someone else must not run code: graph files are read with
``weights_only=True`` and no fallback, and PyG's ``pre_transform.pt``/``pre_filter.pt`` are never
read. (Audit reproduction: a planted payload ran during ``graphs build`` and ``training test``.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from common import UserError
from extraction.store import TraceStore
from extraction.store.writer import rewrite_labels
from graphs import HallucinationGraphDataset
from graphs.cache import load_graph
from graphs.cli import main as graphs_main
from graphs.spec import GraphSpec


class Payload:
    """Unpickling this creates ``marker``: proof that loading the file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(path: Path, marker: Path) -> None:
    torch.save({"x": torch.zeros(1), "payload": Payload(marker)}, path)


def build(store: Path, root: Path) -> HallucinationGraphDataset:
    return HallucinationGraphDataset(root, store, GraphSpec(block=1))


def test_a_planted_graph_file_is_refused_and_does_not_run(synthetic_store, tmp_path):
    dataset = build(synthetic_store, tmp_path / "graphs")
    first = Path(dataset.processed_dir) / dataset.entries[0]["file"]
    marker = tmp_path / "payload_ran"
    plant(first, marker)

    reopened = build(synthetic_store, tmp_path / "graphs")  # the cache, as `training test` opens it
    with pytest.raises(UserError, match=rf"{first} differs from the sha256 in graphs.json"):
        reopened[0]
    # A cache whose record was forged too (or built before checksums): still never unpickled.
    with pytest.raises(UserError, match=rf"{first} is not a plain graph file, refused"):
        load_graph(str(first))
    assert not marker.exists()
    assert reopened[1].num_nodes > 0  # the other graphs still load

    torch.load(first, weights_only=False)  # the control: a plain torch.load runs it
    assert marker.exists()


def test_planted_pre_transform_and_pre_filter_files_are_never_read(
    synthetic_store, tmp_path, capsys
):
    root = tmp_path / "graphs"
    processed = Path(build(synthetic_store, root).processed_dir)
    marker = tmp_path / "payload_ran"
    for name in ("pre_transform.pt", "pre_filter.pt"):
        plant(processed / name, marker)
    args = ["build", "--traces", str(synthetic_store), "--root", str(root), "--graph.block", "1"]
    assert graphs_main(args) == 0
    assert graphs_main([*args, "--force_reload", "true"]) == 0
    assert not marker.exists()
    assert "6 graphs" in capsys.readouterr().out


def test_build_on_a_store_without_labels_says_so(synthetic_store, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(synthetic_store, store)
    unlabelled = {"label": None, "label_method": "none", "label_score": None}
    rewrite_labels(TraceStore(store), {qid: unlabelled for qid in TraceStore(store).question_ids})
    args = [
        "build",
        "--traces",
        str(store),
        "--root",
        str(tmp_path / "graphs"),
        "--graph.block",
        "1",
    ]
    assert graphs_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "has no labelled trace (6 traces" in err
    assert "python -m extraction label" in err and "Traceback" not in err
