"""``python -m graphs compare`` end to end on a synthetic store, and its one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from extraction.store import TraceStore
from extraction.store.writer import rewrite_labels
from graphs.cli import main
from graphs.measure import ANSWER_BINS, MAP_COLUMNS, attention_map
from graphs.statistics import CONTROLS, STATISTICS
from tests.helpers import PNG_MAGIC, assert_one_line_errors

REPO = Path(__file__).resolve().parents[1]

PICTURES = ("effects_by_layer.png", "distributions.png", "attention_by_class.png")

pytestmark = pytest.mark.usefixtures("one_thread")


def relabelled(synthetic_store: Path, work: Path, labels) -> Path:
    store_dir = work / "store"
    shutil.copytree(synthetic_store, store_dir)
    store = TraceStore(store_dir)
    rewrite_labels(
        store,
        {
            qid: {"label": label, "label_method": "planted", "label_score": None}
            for qid, label in zip(store.question_ids, labels(len(store)), strict=True)
        },
    )
    return store_dir


def test_compare_writes_every_output(synthetic_store, tmp_path, capsys):
    out = tmp_path / "compare"
    args = [
        "compare",
        "--traces",
        str(synthetic_store),
        "--graph.blocks",
        "[0,1]",
        "--output",
        str(out),
    ]
    assert main([*args, "--bootstrap", "200", "--top", "4", "--graph.threshold", "0.05"]) == 0
    assert str(out / "compare.md") in capsys.readouterr().out
    for picture in PICTURES:
        assert (out / picture).read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temp files
    table = (out / "graph_statistics.csv").read_text(encoding="utf-8").splitlines()
    assert table[0].split(",")[:5] == ["question_id", "question_unit", "label", "layer",
                                       "pagerank_answer_share"]  # fmt: skip

    record = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    store = TraceStore(synthetic_store)
    with_answer = [q for q in store.question_ids if store.rows[q].n_answer_tokens > 0]
    assert record["n_traces"] == len(with_answer) == record["n_units"] == (len(table) - 1) / 2
    assert record["skipped"]["empty"] == len(store) - len(with_answer)
    assert record["graph_options"]["threshold"] == 0.05 and record["layers"] == [0, 1]
    assert "reciprocity" in record["constant"]  # causal attention
    compared = [name for name in STATISTICS if name not in record["constant"]]
    cells = {(r["statistic"], r["layer"]) for r in record["results"]}
    per_block = {(name, layer) for name in compared for layer in (0, 1) if name not in CONTROLS}
    assert cells == per_block | {(name, None) for name in compared if name in CONTROLS}
    deltas = [r["cliffs_delta"] for r in record["results"]]
    magnitudes = [abs(delta) for delta in deltas if delta is not None]
    assert magnitudes == sorted(magnitudes, reverse=True)  # strongest first
    first = record["results"][0]
    assert {"median_hallucinated", "median_correct", "ci95", "auroc", "p_value", "q_value",
            "significant", "n_hallucinated", "n_correct"} <= set(first)  # fmt: skip
    assert record["attention_map"]["layer"] in (0, 1)
    assert np.array(record["attention_map"]["correct"], dtype=float).shape == (
        ANSWER_BINS, MAP_COLUMNS,
    )  # fmt: skip
    markdown = (out / "compare.md").read_text(encoding="utf-8")
    assert "Each statistic at its strongest block" in markdown and first["statistic"] in markdown


def test_compare_config_file_and_print_config(synthetic_store, tmp_path, capsys):
    config = yaml.safe_load((REPO / "configs/graphs/compare.yaml").read_text(encoding="utf-8"))
    config.update(traces=str(synthetic_store), output=str(tmp_path / "c"), bootstrap=50)
    config["graph"]["blocks"] = [1]
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert (
        main(["compare", "--config", str(path), "--graph.nodes", "answer", "--print_config"]) == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["graph"]["nodes"] == "answer" and printed["graph"]["blocks"] == [1]
    assert printed["bootstrap"] == 50
    assert main(["compare", "--config", str(path), "--graph.nodes", "answer"]) == 0
    record = json.loads((tmp_path / "c" / "compare.json").read_text(encoding="utf-8"))
    assert {"answer_to_prompt_mass", "attention_sink_mass"} <= set(record["constant"])


def test_attention_map_rows_sum_to_one():
    rng = np.random.default_rng(0)
    import torch

    scores = torch.tensor(rng.random((3, 30, 30)), dtype=torch.float32).tril()
    attention = scores / scores.sum(dim=-1, keepdim=True)
    maps = attention_map(attention.half(), n_prompt_tokens=22)  # 8 answer tokens
    assert maps.shape == (ANSWER_BINS, MAP_COLUMNS)
    assert np.nansum(maps, axis=1) == pytest.approx(np.ones(ANSWER_BINS), abs=1e-2)
    short = attention_map(attention.half(), n_prompt_tokens=28)  # 2 answer tokens: 3 empty rows
    assert np.isnan(short).all(axis=1).sum() == ANSWER_BINS - 2


def test_errors_are_one_line_with_status_2(synthetic_store, tmp_path, capsys):
    one_class = relabelled(synthetic_store, tmp_path, lambda n: [1] * n)
    file = tmp_path / "a_file"
    file.write_text("x")
    base = f"compare --traces {synthetic_store} --output {tmp_path / 'out'}"
    cases = [
        f"compare --traces {tmp_path / 'nowhere'}",
        f"{base} --graph.blocks [7]",
        f"{base} --graph.blocks [0,0]",
        f"{base} --graph.block 0 --attention_layer 1",
        f"{base} --graph.block 0 --graph.head_mode sum",
        f"{base} --graph.blocks [0,1] --graph.combine union",
        f"{base} --graph.block 0 --bootstrap 0",
        f"{base} --graph.block 0 --fdr 1.5",
        f"compare --traces {synthetic_store} --graph.block 0 --output {file}",
        f"compare --traces {one_class} --graph.block 0 --output {tmp_path / 'out'}",
    ]
    assert_one_line_errors(main, cases, capsys)
    assert not (tmp_path / "out").exists()


def test_compare_finds_the_planted_cell():
    """Noise everywhere except one statistic at one block: that cell comes first and is the
    only one significant after the correction; the control is compared once."""
    from graphs.measure import Measurements, compare

    rng = np.random.default_rng(0)
    n, layers = 300, [0, 4, 8]
    is_h = np.arange(n) < 150
    values = rng.normal(size=(n, len(layers), len(STATISTICS)))
    planted = list(STATISTICS).index("answer_attention_entropy")
    values[is_h, 1, planted] += 1.0
    control = list(STATISTICS).index("answer_length")
    values[:, :, control] = rng.integers(1, 20, size=n)[:, None]
    maps = np.zeros((n, len(layers), ANSWER_BINS, MAP_COLUMNS))
    measurements = Measurements(
        [f"q{i}" for i in range(n)], [f"q{i}" for i in range(n)], is_h, layers, values, maps, {}
    )
    results, constant = compare(measurements, n_resamples=300)
    assert constant == []
    assert (results[0]["statistic"], results[0]["layer"]) == ("answer_attention_entropy", 4)
    assert results[0]["cliffs_delta"] > 0.4 and results[0]["ci95"][0] > 0.3
    assert [r for r in results if r["significant"]] == [results[0]]
    assert [r["layer"] for r in results if r["statistic"] == "answer_length"] == [None]
    assert len(results) == (len(STATISTICS) - len(CONTROLS)) * len(layers) + len(CONTROLS)
