"""benchmarks.select_on_validation picks each seed's variant by validation AUROC, never by test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.select_on_validation import select


def write_result(output: Path, name: str, seed: int, val: float, test: float) -> None:
    path = output / "cache" / name / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"seed": seed, "auroc": test, "settings": {"best_val_auroc": val}}
    path.write_text(json.dumps({**result, "test_question_ids": ["q1", "q2"]}))


def test_each_seed_keeps_the_variant_best_on_validation(tmp_path):
    write_result(tmp_path, "mpnn", 0, val=0.8, test=0.6)
    write_result(tmp_path, "mpnn_hidden", 0, val=0.7, test=0.9)  # better on test: not chosen
    write_result(tmp_path, "mpnn", 1, val=0.6, test=0.7)
    write_result(tmp_path, "mpnn_hidden", 1, val=0.9, test=0.5)
    write_result(tmp_path, "mpnn_hidden", 2, val=0.9, test=0.5)  # seed 2 lacks mpnn: left out
    write_result(tmp_path, "gcn", 0, val=0.99, test=0.99)  # another detector: not a variant
    chosen = select(tmp_path, "mpnn")
    assert {seed: name for seed, (name, _) in chosen.items()} == {0: "mpnn", 1: "mpnn_hidden"}
    assert chosen[1][1]["auroc"] == 0.5


def test_missing_results_are_one_error_line_and_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        select(tmp_path, "mpnn")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: no results of mpnn* under {tmp_path / 'cache'}\n"
