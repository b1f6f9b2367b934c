"""``python -m graphs build | inspect | draw``, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from extraction.store import TraceStore
from graphs.cli import main
from graphs.spec import GraphSpec
from tests.helpers import assert_one_line_errors, write_config

REPO = Path(__file__).resolve().parents[1]


def test_build_then_inspect(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store, block=1)
    assert main(["build", "--config", str(config), "--graph.top_k", "3"]) == 0
    built = capsys.readouterr().out
    assert "blocks [1]" in built and "top_k=3" in built and "6 graphs" in built

    flags = ["--graph.block", "null", "--graph.blocks", "[0,1]", "--graph.nodes", "answer"]
    assert main(["build", "--config", str(config), *flags]) == 0
    assert "blocks [0, 1]" in capsys.readouterr().out

    assert main(["inspect", str(tmp_path / "graphs")]) == 0
    summary = capsys.readouterr().out
    assert summary.count("6 graphs") == 2
    assert "mean degree" in summary and "splits.json" in summary and "train 4" in summary


def test_build_all_layer_union_graphs_from_a_spec_file(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store)
    charm = REPO / "configs/graphs/charm.yaml"
    flags = f"--graph {charm} --graph.node_features both"
    assert main(["build", "--config", str(config), *flags.split()]) == 0
    built = capsys.readouterr().out
    assert "blocks [0, 1]" in built and "prompt_edges=False" in built and "union of 2" in built
    assert "node_features=both" in built and "head_mode=any" in built
    bad = ["--graph.block", "null", "--graph.blocks", "al", "--graph.combine", "union"]
    assert main(["build", "--config", str(config), *bad]) == 2
    assert "error: " in capsys.readouterr().err


def test_the_repository_configs_name_one_spec_each(capsys):
    """configs/graphs/default.yaml names its spec file; a spec file sets both block and blocks
    (naming it replaces the block choice) and nothing that is not a field."""
    assert (
        main(["build", "--config", str(REPO / "configs/graphs/default.yaml"), "--print_config"])
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["graph"] == GraphSpec(block=15).as_dict()
    for spec_file in ("layer15.yaml", "charm.yaml"):
        values = yaml.safe_load((REPO / "configs/graphs" / spec_file).read_text(encoding="utf-8"))
        assert {"block", "blocks"} <= set(values) <= set(GraphSpec().as_dict())


def test_print_config(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store)
    flags = ["--graph.block", "null", "--graph.blocks", "[3,4]", "--print_config"]
    assert main(["build", "--config", str(config), *flags]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["graph"]["block"] is None and printed["graph"]["blocks"] == [3, 4]


def test_draw(synthetic_store, tmp_path, capsys):
    out = tmp_path / "pictures" / "graph.png"
    question_id = TraceStore(synthetic_store).question_ids[0]
    args = [
        "draw",
        "--traces",
        str(synthetic_store),
        "--question_id",
        question_id,
        "--graph.block",
        "1",
    ]
    assert main([*args, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out) in capsys.readouterr().out


def test_errors_are_one_line_with_status_2(synthetic_store, tmp_path, capsys):
    bad_layers = write_config(tmp_path, synthetic_store, blocks=[0])  # and block 15: both set
    png = tmp_path / "x.png"
    cases = [
        f"build --traces {tmp_path / 'nowhere'} --root {tmp_path}",
        f"build --traces {synthetic_store} --root {tmp_path} --graph.block 7",
        f"build --traces {synthetic_store} --root {tmp_path} --graph.head_mode sum",
        f"build --traces {synthetic_store} --root {tmp_path} --graph.threshold 0",
        f"build --config {bad_layers}",
        f"build --config {tmp_path / 'missing.yaml'}",
        f"build --traces {synthetic_store} --layer 1",
        f"inspect {tmp_path}",
        f"draw --traces {synthetic_store} --question_id nope --graph.block 0 --out {png}",
        f"draw --traces {synthetic_store} --question_id nope --out {png}",
        "nope",
    ]
    assert_one_line_errors(main, cases, capsys)


def test_help_comes_from_the_signatures(capsys):
    for command in ("build", "draw", "compare", "inspect"):
        assert main([command, "--help"]) == 0
    shown = capsys.readouterr().out
    assert "--graph.top_k" in shown and "Keep at most this many incoming edges" in shown
    assert "--split_seed" in shown and "--question_id" in shown and "--attention_layer" in shown


def test_inspect_reads_records_written_before_the_graph_spec(synthetic_store, tmp_path, capsys):
    config = write_config(tmp_path, synthetic_store, block=1)
    assert main(["build", "--config", str(config)]) == 0
    (record_path,) = (tmp_path / "graphs").glob("processed/*/graphs.json")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    spec = record.pop("graph")
    record["options"] = {key: spec[key] for key in ("nodes", "threshold", "top_k", "head_mode")}
    record |= {"combine": "stack", "hidden_layer": None, "topology": False}
    record_path.write_text(json.dumps(record), encoding="utf-8")
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "graphs")]) == 0
    assert "threshold=0.01" in capsys.readouterr().out
