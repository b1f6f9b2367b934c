"""Consumers of a store with several generations per question: splits by question, the
sampling detectors on the stored consistency data, and the benchmark and baselines scoring
generation 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from extraction.store import TraceStore
from extraction.synthetic import write_synthetic_store
from graphs import GraphSpec, HallucinationGraphDataset
from graphs.splits import SPLITS, load_or_make_splits, make_splits
from training.cli import main
from training.detectors.features import load_or_compute
from training.detectors.registry import DETECTORS

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "benchmark" / "demo.yaml"
GCN = REPO / "configs" / "training" / "gcn.yaml"
K = 3
QUESTIONS = 16
RATIOS = "[0.5,0.25,0.25]"

pytestmark = pytest.mark.usefixtures("one_thread")

# Made by the splitter before generations existed (seed 3, default ratios): one generation per
# question must keep giving exactly these splits, under the same splits.json key.
LEGACY_IDS = [f"q{k:02d}" for k in range(20)]
LEGACY_LABELS = [int(k % 3 == 0) for k in range(20)]
LEGACY_KEY = "seed=3 ratios=0.7/0.15/0.15 questions=b37db8a46d38"
LEGACY_SPLITS = {
    name: [f"q{k:02d}" for k in numbers]
    for name, numbers in (
        ("train", (0, 2, 5, 6, 7, 9, 10, 13, 14, 15, 16, 17, 18, 19)),
        ("val", (1, 11, 12)),
        ("test", (3, 4, 8)),
    )
}


def k_traces(n_questions: int, k: int) -> tuple[list[str], list[str], list[int]]:
    """Trace ids ``q#g``, their questions and generations, question by question."""
    rows = [(f"q{q:02d}#{g}", f"q{q:02d}", g) for q in range(n_questions) for g in range(k)]
    ids, units, generations = (list(column) for column in zip(*rows, strict=True))
    return ids, units, generations


def test_one_generation_per_question_keeps_the_legacy_splits_and_key(tmp_path):
    assert make_splits(LEGACY_IDS, LEGACY_LABELS, seed=3) == LEGACY_SPLITS
    explicit = make_splits(
        LEGACY_IDS, LEGACY_LABELS, 3, units=LEGACY_IDS, generations=[0] * len(LEGACY_IDS)
    )
    assert explicit == LEGACY_SPLITS
    saved = tmp_path / "splits.json"
    saved.write_text(json.dumps({LEGACY_KEY: LEGACY_SPLITS}, indent=1))
    before = saved.read_bytes()
    assert load_or_make_splits(tmp_path, LEGACY_IDS, LEGACY_LABELS, 3) == LEGACY_SPLITS
    again = load_or_make_splits(
        tmp_path, LEGACY_IDS, LEGACY_LABELS, 3, units=LEGACY_IDS, generations=[0] * 20
    )
    assert again == LEGACY_SPLITS and saved.read_bytes() == before  # read, not remade


def test_a_question_never_straddles_splits_and_generation_0_stratifies():
    ids, units, generations = k_traces(40, 4)
    first = [int(q % 4 == 0) for q in range(40)]  # generation 0's labels: 10 positive
    samples = [(q * 7 + g) % 2 for q in range(40) for g in range(4)]  # any labels
    labels = [first[int(u[1:])] if g == 0 else samples[i] for i, (u, g) in enumerate(
        zip(units, generations, strict=True))]  # fmt: skip
    splits = make_splits(ids, labels, 5, units=units, generations=generations)
    question_of = dict(zip(ids, units, strict=True))
    questions = {name: {question_of[t] for t in splits[name]} for name in SPLITS}
    assert sum(len(q) for q in questions.values()) == 40  # disjoint
    for name in SPLITS:  # every generation of a split's questions, in input order
        assert splits[name] == [t for t in ids if question_of[t] in questions[name]]
    # the split of the questions is the one-generation split of generation 0
    by_first = make_splits(sorted(set(units)), first, 5)
    assert {name: sorted(q) for name, q in questions.items()} == by_first
    # the samples' labels play no part; generation 0's do
    flipped = [1 - label if g else label for label, g in zip(labels, generations, strict=True)]
    assert make_splits(ids, flipped, 5, units=units, generations=generations) == splits
    ones = [1 if g == 0 else label for label, g in zip(labels, generations, strict=True)]
    assert make_splits(ids, ones, 5, units=units, generations=generations) != splits


def test_a_question_without_generation_0_still_lands_in_one_split():
    ids, units, generations = k_traces(6, 3)
    keep = [i for i, g in enumerate(generations) if not (units[i] == "q02" and g == 0)]
    ids, units, generations = ([column[i] for i in keep] for column in (ids, units, generations))
    splits = make_splits(ids, [0] * len(ids), 0, (0.5, 0.25, 0.25), units=units,
                         generations=generations)  # fmt: skip
    homes = [name for name in SPLITS if {"q02#1", "q02#2"} <= set(splits[name])]
    assert len(homes) == 1


def test_two_traces_of_one_generation_are_refused():
    with pytest.raises(ValueError, match="same generation"):
        make_splits(["a", "b"], [0, 1], units=["q", "q"], generations=[0, 0])


@pytest.fixture(scope="module")
def k_store(tmp_path_factory) -> Path:
    """16 questions of 3 generations (generation 1 repeats 0's answer, 2 is another), with the
    consistency file the extraction writes."""
    root = tmp_path_factory.mktemp("k_store") / "store"
    return write_synthetic_store(root, n_traces=QUESTIONS, num_generations=K)


def test_graph_dataset_splits_a_k_store_by_question(k_store, tmp_path):
    store = TraceStore(k_store)
    parts = {
        name: HallucinationGraphDataset(tmp_path, k_store, GraphSpec(block=1), split=name)
        for name in SPLITS
    }
    questions = {name: {store.rows[q].unit for q in d.question_ids} for name, d in parts.items()}
    assert sum(map(len, questions.values())) == QUESTIONS == len(set().union(*questions.values()))
    train = {t for u in questions["train"] for t in store.units[u]}  # every generation
    assert set(parts["train"].question_ids) == train and len(train) == K * len(questions["train"])
    for name in ("val", "test"):  # generation 0 only: the answer that is scored
        assert sorted(parts[name].question_ids) == sorted(f"{u}#0" for u in questions[name])
    assert len(HallucinationGraphDataset(tmp_path, k_store, GraphSpec(block=1))) == K * QUESTIONS


def by_hand(eigen_hidden, embeddings, lexical) -> list[float]:
    """The three sampling scores of one question, computed directly: INSIDE's EigenScore,
    the entropy of this store's meaning clusters (generation 1 repeats generation 0), and the
    mean pairwise lexical similarity."""
    z = eigen_hidden.double().numpy()
    singular = np.linalg.svd(np.cov(z) + 1e-3 * np.eye(len(z)), compute_uv=False)
    unit = embeddings.double().numpy()
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    sizes = [3] if unit[2] @ unit[0] >= 0.8 else [2, 1]
    p = np.array(sizes) / 3
    pairs = np.triu_indices(3, 1)
    return [np.log10(singular).mean(), -(p * np.log(p)).sum(), -lexical.numpy()[pairs].mean()]


def test_sampling_features_come_from_the_stored_consistency_data(k_store, tmp_path):
    store = TraceStore(k_store)
    features, _ = load_or_compute(store, tmp_path, k=3, progress=False)
    assert features.sampling_skip is None
    assert features.generations.tolist() == [store.rows[q].generation for q in store.question_ids]
    sampled = features.arrays["sampling"]
    assert sampled.shape == (K * QUESTIONS, 3)
    for row, qid in enumerate(store.question_ids):
        record = store.consistency(store.rows[qid].unit)
        expected = by_hand(record.eigen_hidden, record.answer_embeddings, record.lexical_similarity)
        assert sampled[row].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6), qid


def test_benchmark_scores_generation_0_of_the_test_questions(k_store, tmp_path):
    gcn = yaml.safe_load(GCN.read_text())
    gcn["data"]["graph"] = {"block": 1}
    gcn_config = tmp_path / "gcn.yaml"
    gcn_config.write_text(yaml.safe_dump(gcn))
    out = tmp_path / "bench"
    args = [
        "benchmark", "--config", DEMO, "--data.traces", k_store, "--data.root", tmp_path / "g",
        "--data.graph.block", 1, "--data.split_ratios", RATIOS, "--seeds", 1,
        "--graph_detectors", json.dumps({"gcn": str(gcn_config)}), "--graph_max_epochs", 1,
        "--bootstrap", 20, "--output", out,
    ]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    report = json.loads((out / "benchmark.json").read_text())
    assert set(report["detectors"]) == {d.name for d in DETECTORS} | {"gcn"}
    assert report["skipped"] == {}
    tested = {
        name: json.loads((out / "cache" / name / "seed0.json").read_text())["test_question_ids"]
        for name in report["detectors"]
    }
    store = TraceStore(k_store)
    (first,) = set(map(tuple, tested.values()))  # every detector on the same answers
    assert len(first) == QUESTIONS // 4 and all(store.rows[q].generation == 0 for q in first)
    header = f"{K} generations per question ({QUESTIONS} questions, {K * QUESTIONS} traces)"
    assert report["generations"].startswith(header)
    assert header in (out / "benchmark.md").read_text()


def test_baselines_on_a_k_store_score_generation_0(k_store, tmp_path):
    out = tmp_path / "baselines"
    args = [
        "baselines", "--config", GCN, "--data.traces", k_store, "--data.root", tmp_path / "g",
        "--data.graph.block", 1, "--data.split_ratios", RATIOS, "--output", out,
    ]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    table = json.loads((out / "baselines.json").read_text())
    assert table["data"]["n"] == QUESTIONS // 4
    assert all(row["metrics"]["n"] == QUESTIONS // 4 for row in table["detectors"].values())
    assert f"{K} generations per question" in (out / "baselines.md").read_text()
