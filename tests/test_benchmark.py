"""``python -m training benchmark`` end to end on a synthetic store: every detector, two seeds,
outputs, skips, and a rerun served from the per-(detector, seed) cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from common import UserError
from extraction.store import TraceStore
from extraction.synthetic import write_synthetic_store
from tests.helpers import judgement
from training.benchmark import GraphDetector, _select, build_parser
from training.benchmark_report import markdown, summarise
from training.cli import main
from training.detectors.features import load_or_compute
from training.detectors.registry import DETECTORS

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "benchmark" / "demo.yaml"
GCN = REPO / "configs" / "training" / "gcn.yaml"
CHARM = REPO / "configs" / "training" / "charm.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store12(tmp_path_factory) -> Path:
    """12 synthetic traces labelled 0/1 alternately."""
    return write_synthetic_store(tmp_path_factory.mktemp("benchmark") / "store", n_traces=12)


def test_store_features_shapes(store12, tmp_path):
    store = TraceStore(store12)
    features, seconds = load_or_compute(store, tmp_path, k=3, progress=False)
    n, layers = len(store), len(features.layers)
    arrays = features.arrays
    assert arrays["sequence"].shape == (n, 4) and arrays["lapeig"].shape == (n, layers, 4, 3)
    assert arrays["mean_state"].shape == (n, layers, 32)
    assert arrays["shift"].shape == (n, layers - 1, 4) and "sampling" not in arrays
    assert features.sampling_skip.startswith("single-generation")
    again, cached_seconds = load_or_compute(store, tmp_path, k=3, progress=False)
    assert seconds > 0 and cached_seconds == 0.0
    assert (again.arrays["lookback"] == arrays["lookback"]).all()


def test_benchmark_end_to_end_and_resume(store12, tmp_path, capsys):
    out = tmp_path / "bench"
    gcn = yaml.safe_load(GCN.read_text())
    gcn["data"]["graph"] = {"block": 1}  # a graph detector keeps its own spec: a tiny-model block
    gcn_config = tmp_path / "gcn.yaml"
    gcn_config.write_text(yaml.safe_dump(gcn))
    graph_detectors = {
        "gcn": str(gcn_config),
        # an ablation: a config and overrides of it
        "gcn_threshold": f"{gcn_config} --data.graph.threshold 0.2",
        "mpnn": str(CHARM),  # its own all-layer graph shape, not the benchmark's data defaults
        "missing": "configs/none.yaml",
    }
    args = [
        "benchmark", "--config", DEMO, "--data.traces", store12, "--data.root", tmp_path / "g",
        "--data.graph.block", 1, "--data.split_ratios", "[0.5,0.25,0.25]", "--seeds", 2,
        "--graph_detectors", json.dumps(graph_detectors),
        "--graph_max_epochs", 2, "--bootstrap", 50, "--output", out,
    ]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    ran = {d.name for d in DETECTORS if d.family != "sampling"} | {"gcn", "gcn_threshold", "mpnn"}
    assert set(report["detectors"]) == ran
    assert set(report["skipped"]) == {
        "eigenscore",
        "semantic_entropy",
        "lexical_similarity",
        "missing",
    }
    assert "not found" in report["skipped"]["missing"]["reason"]
    graph = {
        name: json.loads((out / "cache" / name / "seed0.json").read_text())["settings"]["graph"]
        for name in ("gcn", "gcn_threshold", "mpnn")
    }
    assert graph["gcn"]["threshold"] == 0.01 and graph["gcn_threshold"]["threshold"] == 0.2
    assert graph["mpnn"]["combine"] == "union" and not graph["mpnn"]["prompt_edges"]
    assert graph["mpnn"]["node_features"] == "attention_diagonal"
    for name, summary in report["detectors"].items():
        assert len(summary["auroc"]) == 2 and summary["n_test"] == [2, 2], name
        assert summary["auroc_mean"] is None or 0 <= summary["auroc_mean"] <= 1
    assert report["label_methods"]["index"] == {"synthetic": 12}
    assert report["label_methods"]["summary"] == "synthetic (12)"
    assert len(report["manifest_sha256"]) == 64 and report["reference"] in {
        d.name for d in DETECTORS
    }
    table = (out / "benchmark.md").read_text()
    assert "| 1 |" in table and "skipped: single-generation store" in table
    assert (out / "benchmark.png").read_bytes()[:4] == b"\x89PNG"

    cache = out / "cache" / "gcn" / "seed1.json"
    stamp = cache.stat().st_mtime_ns
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    assert cache.stat().st_mtime_ns == stamp  # served from the cache, not retrained
    assert (
        json.loads((out / "benchmark.json").read_text())["detectors"]["gcn"]["auroc"]
        == (report["detectors"]["gcn"]["auroc"])
    )


def test_unknown_detector_is_a_one_line_error(store12, tmp_path, capsys):
    args = ["benchmark", "--config", DEMO, "--data.traces", store12, "--data.root", tmp_path]
    status = main([str(a) for a in [*args, "--data.graph.block", 1, "--detectors", "[nope]"]])
    assert status == 2
    assert "unknown detector(s) ['nope']" in capsys.readouterr().err


def test_reader_gives_token_scores_without_layers(store12):
    store = TraceStore(store12)
    qid = store.question_ids[0]
    trace = store[qid]
    stats = store.answer_stats(qid)
    assert stats.logprobs.equal(trace.token_logprobs)
    assert stats.entropy.equal(trace.token_entropy)
    assert len(trace.token_logprobs) == trace.n_answer_tokens


def test_report_names_the_judgement_file_it_scored_on(store12, tmp_path):
    store = TraceStore(store12)
    rows = [
        judgement(qid, store.rows[qid].generated_answer_clean, 1 - store.rows[qid].label)
        for qid in store.question_ids
    ]
    path = tmp_path / "flipped.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "bench"
    args = [
        "benchmark", "--config", DEMO, "--data.traces", store12, "--data.root", tmp_path / "g",
        "--data.graph.block", 1, "--data.split_ratios", "[0.5,0.25,0.25]", "--seeds", 1,
        "--data.labels", path, "--detectors", "[mean_logprob]", "--graph_detectors", "{}",
        "--bootstrap", 10, "--output", out,
    ]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    summary = f"{path}, flipped.jsonl (12 labelled)"
    assert report["label_methods"]["summary"] == summary
    assert f"labels: {summary};" in (out / "benchmark.md").read_text()


def test_graph_detector_without_a_config_is_a_one_line_error():
    with pytest.raises(UserError, match="graph detector 'x' names no training config"):
        GraphDetector.parse("x", "  ")
    detector = GraphDetector.parse("t", "configs/training/charm.yaml --data.graph.threshold 0.1")
    assert detector.overrides == ["--data.graph.threshold", "0.1"]


@pytest.mark.parametrize(
    "config", sorted(p.name for p in (REPO / "configs/benchmark").glob("*.yaml"))
)
def test_every_benchmark_config_names_real_detectors_and_configs(config):
    """A shipped benchmark config parses, its trace detectors exist and every graph detector's
    training config is a file of the repository (a typo would surface only after the graphs)."""
    cfg = build_parser("benchmark").parse_args(
        ["--config", str(REPO / "configs/benchmark" / config)]
    )
    assert _select(cfg.detectors)
    assert cfg.graph_detectors
    for name, spec in cfg.graph_detectors.items():
        detector = GraphDetector.parse(name, spec)
        assert (REPO / detector.config).is_file(), (name, detector.config)
        assert len(detector.overrides) % 2 == 0 and all(
            flag.startswith("--") for flag in detector.overrides[::2]
        ), (name, detector.overrides)


def test_a_run_of_graph_detectors_only_says_it_has_no_baseline():
    """``--detectors []``: no trace baseline to compare against, said so (not "**None**")."""
    run = {
        "seed": 0, "auroc": 0.8, "auprc": 0.8, "auprc_correct": 0.7, "test_labels": [0, 1, 1],
        "seconds": 1.0, "settings": {"epochs": 3},
    }  # fmt: skip
    context = {
        "model": "m", "store": "s", "n_traces": 3, "seeds": [0], "n_test": 3,
        "n_hallucinated": 2, "label_methods": {"summary": "alias_match (3)"},
        "manifest_sha256": "0" * 64, "reference": None,
    }  # fmt: skip
    text = markdown({"mpnn": summarise([run])}, {}, {"mpnn": "graph"}, context)
    assert "**None**" not in text
    assert "Δ AUROC: n/a (no trace detector in this run to compare against)." in text
    assert "| 1 | mpnn | graph | 0.800 ± 0.000 |" in text
