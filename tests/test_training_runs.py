"""What a ``fit`` leaves behind: one checkpoint per version with a link to the newest, TensorBoard
and CSV logs, and the same bits when run again with the same config and seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common import run_command
from extraction.synthetic import write_synthetic_store
from tests.helpers import GCN, run_args, strs
from training.cli import main
from training.demo_check import EXPECTED, demo_check

pytestmark = pytest.mark.usefixtures("one_thread")
EPOCH_SCALARS = {"train/loss_epoch", "train/auroc", "val/loss", "val/auroc"}


def fit_and_test(store: Path, work: Path) -> tuple[Path, dict]:
    """One fit and a test of the checkpoint that ``checkpoints/best.ckpt`` names; the version
    folder's checkpoint and the report without its wall-clock ``created`` and the checkpoint's
    sha256 (checked here against the version folder's ``checksums.json``: the file holds its own
    folder's path, so two versions' files differ)."""
    args = run_args(store, work)
    assert main(strs(["fit", *args])) == 0
    latest = work / "runs" / "checkpoints" / "best.ckpt"
    assert latest.is_symlink()
    assert main(strs(["test", *args, "--ckpt_path", latest])) == 0
    reports = sorted((work / "runs" / "lightning_logs").glob("version_*/report.json"))
    report = json.loads(max(reports, key=lambda path: path.stat().st_mtime_ns).read_text())
    report.pop("created")
    checksums = json.loads((latest.resolve().parent / "checksums.json").read_text())
    assert report.pop("checkpoint_sha256") == checksums["best.ckpt"]
    return latest.resolve(), report


def test_two_fits_keep_their_checkpoints_and_give_the_same_bits(synthetic_store, tmp_path):
    first, first_report = fit_and_test(synthetic_store, tmp_path)
    torch.set_num_threads(2)  # a machine with more cores: --threads (default 1) still rules
    second, second_report = fit_and_test(synthetic_store, tmp_path)

    logs = tmp_path / "runs" / "lightning_logs"
    assert first == logs / "version_0" / "checkpoints" / "best.ckpt"
    assert second == logs / "version_2" / "checkpoints" / "best.ckpt"  # version_1: the test
    assert first.is_file() and second.is_file()
    weights = [torch.load(path, weights_only=True)["state_dict"] for path in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    assert json.dumps(first_report) == json.dumps(second_report)


def test_fit_logs_epoch_scalars_to_tensorboard_and_csv(synthetic_store, tmp_path):
    assert main(strs(["fit", *run_args(synthetic_store, tmp_path)])) == 0
    version = tmp_path / "runs" / "lightning_logs" / "version_0"
    (events,) = version.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert tags >= EPOCH_SCALARS
    assert len(accumulator.Scalars("val/auroc")) == 3  # one per epoch (max_epochs 3)
    header = (version / "metrics.csv").read_text().splitlines()[0].split(",")
    assert set(header) >= EPOCH_SCALARS


def test_an_unversioned_best_checkpoint_is_kept(synthetic_store, tmp_path):
    old = tmp_path / "runs" / "checkpoints" / "best.ckpt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"an earlier run's weights")
    assert main(strs(["fit", *run_args(synthetic_store, tmp_path)])) == 0
    assert (old.parent / "best-unversioned.ckpt").read_bytes() == b"an earlier run's weights"
    assert old.is_symlink() and old.resolve().parent.parent.name == "version_0"


def test_best_and_last_name_the_newest_version_and_are_checked(synthetic_store, tmp_path, capsys):
    args = run_args(synthetic_store, tmp_path)
    assert main(strs(["fit", *args])) == 0
    for alias in ("best", "last"):
        assert main(strs(["test", *args, "--ckpt_path", alias])) == 0
    real = (tmp_path / "runs" / "checkpoints" / "best.ckpt").resolve()
    data = bytearray(real.read_bytes())
    data[-100] ^= 0xFF
    real.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(strs(["test", *args, "--ckpt_path", "best"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"{real} differs from the sha256 `fit` recorded" in err


def benchmark_outputs(store: Path, work: Path, output: Path) -> tuple[dict, dict]:
    """A one-seed benchmark with a GCN: its benchmark.json without wall-clock fields and its
    output folder, and the GCN's test scores."""
    args = [
        "benchmark", "--data.traces", store, "--data.root", work / "graphs",
        "--data.graph.block", 1, "--data.split_ratios", "[0.34,0.33,0.33]", "--seeds", 1,
        "--detectors", "[mean_logprob]",
        "--graph_detectors", json.dumps({"gcn": f"{GCN} --data.graph.block 1"}),
        "--graph_max_epochs", 3, "--bootstrap", 20, "--output", output,
    ]  # fmt: skip
    assert main(strs(args)) == 0
    report = json.loads((output / "benchmark.json").read_text())
    report.pop("created"), report.pop("timings_s"), report["config"].pop("output")
    for summary in report["detectors"].values():
        summary.pop("seconds")
    return report, json.loads((output / "cache" / "gcn" / "seed0.json").read_text())["scores"]


def test_the_benchmark_gives_the_same_graph_detector_scores_twice(tmp_path):
    store = write_synthetic_store(tmp_path / "store", n_traces=12)
    first = benchmark_outputs(store, tmp_path, tmp_path / "first")
    second = benchmark_outputs(store, tmp_path, tmp_path / "second")
    assert first[1] == second[1]
    assert json.dumps(first[0]) == json.dumps(second[0])


def test_demo_check_says_whether_the_auroc_is_in_the_documented_range(tmp_path, capsys):
    low, high = EXPECTED
    report = tmp_path / "report.json"
    for auroc, word in ((low, "inside"), (high + 0.01, "OUTSIDE")):
        report.write_text(json.dumps({"metrics": {"auroc": auroc}}))
        assert run_command("training", demo_check, [str(report)]) == 0
        assert f"GCN test AUROC {auroc:.3f}: {word} the range" in capsys.readouterr().out
    assert run_command("training", demo_check, [str(tmp_path / "none.json")]) == 2
    assert "none.json does not exist" in capsys.readouterr().err


def test_a_link_to_a_removed_version_is_one_line(tmp_path, capsys):
    link = tmp_path / "runs" / "checkpoints" / "best.ckpt"
    link.parent.mkdir(parents=True)
    link.symlink_to("../lightning_logs/version_3/checkpoints/best.ckpt")
    assert main(strs(["test", "--config", GCN, "--ckpt_path", link])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no longer exists" in err, err
