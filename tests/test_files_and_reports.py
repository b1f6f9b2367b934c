"""Reports are written atomically, every detector report is a row, and a validation split on
which no cut beats chance does not produce a threshold that flags nothing."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from matplotlib.figure import Figure

from common import UserError, atomic_open, atomic_write_text, read_json, save_figure
from extraction.store import TraceStore
from training.baselines import _detector_reports, markdown_table
from training.metrics import choose_threshold, evaluate
from training.report import write_json


def no_temp_files(folder) -> bool:
    return not list(folder.glob(".*.tmp"))


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    path = atomic_write_text(tmp_path / "baselines.md", "old table\n")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("half of a new ta")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old table\n" and no_temp_files(tmp_path)


def test_report_json_is_replaced_only_when_complete(tmp_path):
    path = write_json(tmp_path / "report.json", {"metrics": {"auroc": 0.5}})
    with pytest.raises(TypeError):
        write_json(path, {"metrics": {"auroc": object()}})  # fails while serialising
    assert json.loads(path.read_text()) == {"metrics": {"auroc": 0.5}} and no_temp_files(tmp_path)


def test_png_is_replaced_only_when_complete(tmp_path):
    figure = Figure()
    figure.subplots().plot([0, 1], [0, 1])
    path = save_figure(figure, tmp_path / "roc_curve.png")
    before = path.read_bytes()
    assert before[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        save_figure(figure, path, dpi=-5)  # matplotlib refuses mid-way
    assert path.read_bytes() == before and no_temp_files(tmp_path)


def report(detector: str, seed: int, auroc: float) -> dict:
    return {
        "detector": detector,
        "metrics": {"auroc": auroc, "auprc": 0.5, "f1": 0.5, "accuracy": 0.5, "threshold": 0.5,
                    "n": 10},
        "auroc_ci95": None,
        "data": {"split_sha256": "same", "graph_options": {"layer": 15, "head_mode": "mean"}},
        "config": {"seed_everything": seed},
    }  # fmt: skip


def test_baselines_show_every_report_of_several_seeds(tmp_path):
    """Six reports, three seeds of two models: six rows (the audit saw two)."""
    paths = []
    for detector in ("GCNClassifier", "GATClassifier"):
        for seed in (0, 1, 2):
            path = tmp_path / f"{detector}_{seed}.json"
            path.write_text(json.dumps(report(detector, seed, 0.6 + seed / 100)))
            paths.append(str(path))
    rows = _detector_reports(paths, "same")
    assert len(rows) == 6
    assert "GCNClassifier (block 15, mean), seed 2" in rows
    assert rows["GATClassifier (block 15, mean), seed 1"]["metrics"]["auroc"] == 0.61
    assert markdown_table(rows).count("\n") == 8  # header, rule, six rows
    same_seed = _detector_reports([paths[0], paths[0]], "same")
    assert len(same_seed) == 2  # the same file twice is still shown twice, by its path


def test_no_cut_better_than_chance_on_val_does_not_flag_nothing():
    """A weak score (the audit's mean_logprob: test AUROC 0.601, F1 0.000): on validation it
    ranks the wrong way, so every Youden J <= 0 and argmax took the cut above every score."""
    val_probs = torch.tensor([0.30, 0.35, 0.40, 0.60, 0.65, 0.70], dtype=torch.float64)
    val_targets = torch.tensor([1, 1, 1, 0, 0, 0])
    threshold = choose_threshold(val_probs, val_targets, "youden")
    assert threshold == 0.5
    test_probs = torch.tensor([0.3, 0.45, 0.55, 0.6, 0.7, 0.52])
    test_targets = torch.tensor([0, 0, 1, 1, 1, 0])
    metrics = evaluate(test_probs, test_targets, threshold)
    assert metrics["f1"] > 0.5
    good = choose_threshold(val_probs, 1 - val_targets, "youden")
    assert 0.4 < good <= 0.6  # a split that does separate keeps its own cut


def test_an_output_path_blocked_by_a_file_is_one_line(synthetic_store, tmp_path, capsys):
    from graphs.cli import main as graphs_main

    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    draw = ["draw", "--traces", str(synthetic_store), "--graph.block", "1", "--question_id"]
    draw += [TraceStore(synthetic_store).question_ids[0]]
    for args, expected in [
        (["build", "--traces", str(synthetic_store), "--root", str(blocker), "--graph.block", "1"],
         f"Not a directory: {blocker / 'processed'}"),
        ([*draw, "--out", str(blocker / "graph.png")], f"File exists: {blocker}"),
    ]:  # fmt: skip
        assert graphs_main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "Traceback" not in err


def test_a_missing_json_file_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match=r"missing\.json does not exist; check the path"):
        read_json(tmp_path / "missing.json")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_are_as_readable_as_the_umask_allows(tmp_path, umask):
    """Every writer's files end with the mode a plain ``open`` gives: ``0666 & ~umask``."""
    from common import plain_temp
    from extraction.export import export_pickle
    from extraction.synthetic import write_synthetic_store
    from graphs import GraphSpec, HallucinationGraphDataset
    from training.report import plot_roc

    previous = os.umask(umask)
    try:
        store = write_synthetic_store(tmp_path / "store", n_traces=6)  # shards, index, manifest
        HallucinationGraphDataset(tmp_path / "graphs", store, GraphSpec(block=1))  # + splits
        export_pickle(store, tmp_path / "pickle", batch_size=3)
        write_json(tmp_path / "runs" / "report.json", {"metrics": {"auroc": 0.5}})
        curve = {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0], "auroc": 0.65}
        plot_roc(tmp_path / "runs" / "roc.png", {"gcn": curve}, "ROC")
        atomic_write_text(tmp_path / "runs" / "baselines.md", "| detector |\n")
        model_folder = plain_temp(tmp_path, ".model.", folder=True)  # the converted-model cache
    finally:
        os.umask(previous)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    names = {path.name for path in files}
    assert {"index.jsonl", "manifest.json", "splits.json", "report.json", "roc.png"} <= names
    assert any(name.endswith(".safetensors") for name in names)
    assert any(name.endswith(".pt") for name in names) and any(n.endswith(".pkl") for n in names)
    modes = {str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode) for path in files}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask)
    assert stat.S_IMODE(model_folder.stat().st_mode) == 0o777 & ~umask
