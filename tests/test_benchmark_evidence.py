"""Learning curves, transfer and held-out relations of ``python -m training benchmark`` (issue
20), on tiny synthetic stores whose rows carry a relation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from lightning.pytorch import Trainer

from extraction.store import TraceStore
from extraction.synthetic import write_synthetic_store
from graphs.dataset import store_splits
from graphs.splits import SPLITS, make_group_splits, nested_subset, relation_of
from training import benchmark
from training.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "benchmark" / "demo.yaml"
GCN = REPO / "configs" / "training" / "gcn.yaml"
QUICK = ["probe_lr_mean", "mean_logprob", "lookback_lens"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> Path:
    """24 synthetic fact questions of 4 relations, labelled 0/1 alternately."""
    return write_synthetic_store(
        tmp_path_factory.mktemp("facts") / "store", n_traces=24, relations=4
    )


@pytest.fixture
def gcn_detector(tmp_path) -> str:
    """``--graph_detectors`` of a one-epoch GCN on the tiny model's block 1."""
    gcn = yaml.safe_load(GCN.read_text())
    gcn["data"]["graph"] = {"layer": 1}
    config = tmp_path / "gcn.yaml"
    config.write_text(yaml.safe_dump(gcn))
    return json.dumps({"gcn": str(config)})


def _args(store: Path, tmp_path: Path, *extra) -> list[str]:
    args = [
        "benchmark", "--config", DEMO, "--data.traces", store, "--data.root", tmp_path / "g",
        "--data.graph.block", 1, "--data.split_ratios", "[0.5,0.25,0.25]", "--seeds", 2,
        "--detectors", json.dumps(QUICK), "--graph_detectors", "{}", "--graph_max_epochs", 1,
        "--bootstrap", 20, "--output", tmp_path / "out", *extra,
    ]  # fmt: skip
    return [str(a) for a in args]


def test_nested_subsets_are_nested_balanced_and_seeded():
    ids = [f"q{k}" for k in range(200)]
    strata = {q: int(k % 4 == 0) for k, q in enumerate(ids)}
    subsets = {n: nested_subset(ids, ids, strata, n, seed=3) for n in (10, 40, 100, 200)}
    for small, large in ((10, 40), (40, 100), (100, 200)):
        assert set(subsets[small]) < set(subsets[large])
    assert [len(s) for s in subsets.values()] == [10, 40, 100, 200]
    assert sum(strata[q] for q in subsets[40]) == 10  # the split's 1 in 4 kept
    assert subsets[40] == sorted(subsets[40], key=ids.index)  # input order
    assert subsets[40] != nested_subset(ids, ids, strata, 40, seed=4)


def test_nested_subset_keeps_a_questions_generations_together():
    ids = [f"q{k}#{g}" for k in range(10) for g in range(3)]
    units = [qid.split("#")[0] for qid in ids]
    kept = nested_subset(ids, units, dict.fromkeys(units, 0), 4)
    assert len(kept) == 12 and len({q.split("#")[0] for q in kept}) == 4


def test_group_splits_hold_out_whole_relations():
    ids = [f"q{k}" for k in range(90)]
    groups = [f"r{k % 9}" for k in range(90)]
    splits = make_group_splits(ids, groups, seed=1)
    held = {name: {groups[ids.index(q)] for q in splits[name]} for name in SPLITS}
    assert held["train"].isdisjoint(held["val"] | held["test"]) and held["val"].isdisjoint(
        held["test"]
    )
    assert sorted(q for members in splits.values() for q in members) == sorted(ids)
    assert all(held.values()) and splits == make_group_splits(ids, groups, seed=1)
    assert len(splits["test"]) >= 0.15 * 90


def test_group_splits_need_a_relation_per_trace_and_three_relations():
    with pytest.raises(Exception, match="have no relation"):
        make_group_splits(["a", "b", "c"], ["r0", None, "r1"])
    with pytest.raises(Exception, match="at least 3 relations"):
        make_group_splits(["a", "b", "c"], ["r0", "r1", "r1"])


def test_synthetic_fact_rows_carry_a_relation(facts, tmp_path):
    store = TraceStore(facts)
    assert [relation_of(store.rows[q]) for q in store.question_ids[:5]] == [
        "relation_0", "relation_0", "relation_1", "relation_1", "relation_2",
    ]  # fmt: skip
    labelled = {q: store.rows[q].label for q in store.question_ids}
    splits = store_splits(tmp_path, store, labelled, 0, (0.5, 0.25, 0.25), "relation")
    held = {name: {relation_of(store.rows[q]) for q in splits[name]} for name in SPLITS}
    assert sum(len(h) for h in held.values()) == 4 and all(held.values())


def test_learning_curve_outputs_and_nested_training(facts, tmp_path, gcn_detector):
    args = _args(facts, tmp_path, "--train_sizes", "[4,8]", "--graph_detectors", gcn_detector)
    assert main(args) == 0
    out = tmp_path / "out"
    curve = json.loads((out / "learning_curve.json").read_text())
    assert set(curve) == {*QUICK, "gcn"}
    for name, by_size in curve.items():
        # the whole train split (12 questions) ends the curve
        assert list(by_size) == ["4", "8", "12"], name
        assert all(len(v) == 2 for v in by_size.values()), name
    for size in (4, 8):  # a subset trains on that many questions, graph detectors too
        cached = out / "train_size" / str(size) / "cache"
        assert json.loads((cached / "probe_lr_mean" / "seed0.json").read_text())["n_train"] == size
        assert (cached / "gcn" / "seed1.json").exists()
    table = (out / "learning_curve.md").read_text()
    assert "| N = 4 | N = 8 | N = 12 (all) |" in table and "| gcn | graph |" in table
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "cache" / "probe_lr_mean" / "seed0.json").read_text())["n_train"] == 12


def test_train_size_above_the_split_is_a_one_line_error(facts, tmp_path, capsys):
    assert main(_args(facts, tmp_path, "--train_sizes", "[4,13]")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "12 questions" in err and "\n" not in err
    assert not (tmp_path / "g" / "processed").exists()  # no graph built


def test_transfer_scores_a_second_store_and_reports_it(facts, tmp_path, gcn_detector):
    other = write_synthetic_store(tmp_path / "other", n_traces=10, relations=4)
    args = _args(facts, tmp_path, "--transfer_traces", str(other), "--split_by", "relation")
    assert main([*args, "--graph_detectors", gcn_detector]) == 0
    out = tmp_path / "out"
    report = json.loads((out / "benchmark.json").read_text())
    assert report["split_by"] == "relation" and list(report["transfer"]) == ["other"]
    for name in [*QUICK, "gcn"]:
        scored = report["detectors"][name]["transfer"]["other"]
        assert scored["n"] == 10 and len(scored["auroc"]) == 2
    table = (out / "benchmark.md").read_text()
    assert "## Transfer" in table and "held-out relations (test)" in table
    assert (out / "transfer.png").read_bytes()[:4] == b"\x89PNG"


def _transfer_aurocs(out: Path, store: str) -> dict[str, list[float]]:
    detectors = json.loads((out / "benchmark.json").read_text())["detectors"]
    return {name: d["transfer"][store]["auroc"] for name, d in detectors.items()}


def test_a_store_added_later_is_scored_by_the_kept_detectors(
    facts, tmp_path, gcn_detector, monkeypatch
):
    """A second run naming one more transfer store trains no graph detector: the kept best
    checkpoints score it, and the scores equal a fresh run's."""
    other = write_synthetic_store(tmp_path / "other", n_traces=10, relations=4)
    third = write_synthetic_store(tmp_path / "third", n_traces=8, relations=4)
    args = [*_args(facts, tmp_path), "--graph_detectors", gcn_detector]
    assert main([*args, "--transfer_traces", str(other)]) == 0
    out = tmp_path / "out"
    before = _transfer_aurocs(out, "other")

    def no_training(*args, **kwargs):
        raise AssertionError("a graph detector was trained again")

    with monkeypatch.context() as patched:
        patched.setattr(Trainer, "fit", no_training)
        assert main([*args, "--transfer_traces", str(other), str(third)]) == 0
    assert _transfer_aurocs(out, "other") == before
    added = _transfer_aurocs(out, "third")
    assert set(added) == {*QUICK, "gcn"}
    cached = json.loads((out / "cache" / "gcn" / "seed1.json").read_text())
    assert set(cached["transfer_identity"]) == {"other", "third"}

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert main([*_args(facts, fresh), "--graph_detectors", gcn_detector,
                 "--transfer_traces", str(third)]) == 0  # fmt: skip
    assert _transfer_aurocs(fresh / "out", "third") == added

    shutil.rmtree(out / "graph" / "gcn" / "seed0")  # no kept checkpoint: that seed trains again
    fourth = write_synthetic_store(tmp_path / "fourth", n_traces=6, relations=4)
    assert main([*args, "--transfer_traces", str(other), str(fourth)]) == 0
    assert (out / "graph" / "gcn" / "seed0").is_dir()
    assert _transfer_aurocs(out, "other") == before


def test_a_result_cached_before_transfer_left_the_key_is_still_found(tmp_path):
    """The key of a result cached before covered its transfer stores; it is found (and given
    the new key) when the run names those stores, and only then."""
    identity = {"detector": "probe_lr_mean", "seed": 0}
    other = SimpleNamespace(name="other", identity=lambda: ["other", "abc123", "index"])
    third = SimpleNamespace(name="third", identity=lambda: ["third", "def456", "index"])
    path = tmp_path / "seed0.json"
    old_key = benchmark._sha(identity | {"transfer": [other.identity()]})
    path.write_text(json.dumps({"key": old_key, "auroc": 0.7, "transfer": {"other": None}}))
    key = benchmark._sha(identity)
    found, rekeyed = benchmark._cached(path, key, identity, [other, third])
    assert found["key"] == key and found["transfer_identity"] == {"other": other.identity()}
    assert rekeyed
    assert benchmark._cached(path, key, identity, [third]) == (None, False)
    assert benchmark._cached(path, key, {**identity, "seed": 1}, [other]) == (None, False)
    path.write_text(json.dumps(found))
    assert benchmark._cached(path, key, identity, [third]) == (found, False)


def test_transfer_store_of_another_model_is_a_one_line_error(facts, tmp_path, capsys):
    other = write_synthetic_store(tmp_path / "gemma", n_traces=4, model="gemma3_270M")
    assert main(_args(facts, tmp_path, "--transfer_traces", str(other))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "gemma3_270M" in err and "same model" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_jobs_share_the_work_and_give_the_same_report(facts, tmp_path, gcn_detector):
    """--jobs 2: two processes fill the cache (each job once), the report is the one-process
    report; the graphs they read were built before they started."""
    other = write_synthetic_store(tmp_path / "other", n_traces=10, relations=4)
    extra = ["--graph_detectors", gcn_detector, "--transfer_traces", str(other)]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    assert main([*_args(facts, one), *extra]) == 0
    assert main([*_args(facts, two), *extra, "--jobs", "2"]) == 0
    untimed = [
        {name: {k: v for k, v in d.items() if k != "seconds"} for name, d in report.items()}
        for report in (
            json.loads((d / "out" / "benchmark.json").read_text())["detectors"] for d in (one, two)
        )
    ]
    assert untimed[1] == untimed[0] and "gcn" in untimed[0]
    logs = sorted((two / "out" / "workers").glob("worker*.log"))
    assert [path.name for path in logs] == ["worker0.log", "worker1.log"]
    texts = [path.read_text() for path in logs]
    assert all("gcn seed" in text for text in texts)  # each process fitted one GCN seed
    assert not any("built" in text for text in texts)  # and built no graph


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--jobs", "0"], "--jobs must be at least 1"), (["--worker", "2/2"], "give I/N")],
)
def test_bad_jobs_are_one_line_errors(facts, tmp_path, capsys, extra, message):
    assert main(_args(facts, tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "g").exists()
