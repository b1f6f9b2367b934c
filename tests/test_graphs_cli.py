"""``python -m graphs build | inspect | draw``, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from extraction.store import TraceStore
from graphs.cli import main
from tests.conftest import assert_one_line_errors

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, store: Path, **overrides) -> Path:
    config = yaml.safe_load((REPO / "configs/graphs/default.yaml").read_text(encoding="utf-8"))
    config.update(traces=str(store), root=str(tmp_path / "graphs"), **overrides)
    path = tmp_path / "graphs.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_build_then_inspect(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store, layer=1)
    assert main(["build", "--config", str(config), "--top-k", "3"]) == 0
    built = capsys.readouterr().out
    assert "layers [1]" in built and "top_k=3" in built and "6 graphs" in built

    assert main(["build", "--config", str(config), "--layers", "0", "1", "--nodes", "answer"]) == 0
    assert "layers [0, 1]" in capsys.readouterr().out

    assert main(["inspect", str(tmp_path / "graphs")]) == 0
    summary = capsys.readouterr().out
    assert summary.count("6 graphs") == 2
    assert "mean degree" in summary and "splits.json" in summary and "train 4" in summary


def test_build_all_layer_union_graphs(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store)
    flags = "--layers all --combine union --head-mode any --no-prompt-edges --node-features both"
    assert main(["build", "--config", str(config), *flags.split()]) == 0
    built = capsys.readouterr().out
    assert "layers [0, 1]" in built and "prompt_edges=False" in built and "union of 2" in built
    assert main(["build", "--config", str(config), "--layers", "al", "--combine", "union"]) == 2
    assert "error: layers must be block numbers or all" in capsys.readouterr().err


def test_print_config(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store)
    assert main(["build", "--config", str(config), "--layers", "3", "4", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["layer"] is None and printed["layers"] == [3, 4]


def test_draw(synthetic_store, tmp_path, capsys):
    out = tmp_path / "pictures" / "graph.png"
    question_id = TraceStore(synthetic_store).question_ids[0]
    args = ["draw", "--traces", str(synthetic_store), "--question-id", question_id, "--layer", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out


def test_errors_are_one_line_with_status_2(synthetic_store, tmp_path, capsys):
    bad_layers = write_config(tmp_path, synthetic_store, layers=[0])  # and layer 15: both set
    cases = [
        f"build --traces {tmp_path / 'nowhere'} --root {tmp_path}",
        f"build --traces {synthetic_store} --root {tmp_path} --layer 7",
        f"build --traces {synthetic_store} --root {tmp_path} --head-mode sum",
        f"build --config {bad_layers}",
        f"build --config {tmp_path / 'missing.yaml'}",
        f"inspect {tmp_path}",
        f"draw --traces {synthetic_store} --question-id nope --layer 0 --out {tmp_path / 'x.png'}",
    ]
    assert_one_line_errors(main, cases, capsys)
