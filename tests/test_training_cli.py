"""``python -m training``: fit → test → predict, sweeps, baselines, DDP and config errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from extraction.store import TraceStore
from tests.helpers import (
    GCN,
    PNG_MAGIC,
    best_checkpoint,
    check_report,
    judgement,
    run_args,
    strs,
    write_jsonl,
)
from training.cli import main

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def check_scores(path: Path, store: Path) -> None:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["question_id"] for row in rows) == sorted(TraceStore(store).question_ids)
    assert all(0.0 <= float(row["score"]) <= 1.0 for row in rows)
    assert {row["predicted_label"] for row in rows} <= {"0", "1"}


def test_fit_test_predict_round_trip(synthetic_store, tmp_path, capsys):
    args = run_args(synthetic_store, tmp_path)
    assert main(strs(["fit", *args])) == 0
    checkpoint = best_checkpoint(tmp_path)
    assert torch.load(checkpoint, weights_only=False)["state_dict"]["threshold"].numel() == 1

    assert main(strs(["test", *args, "--ckpt_path", checkpoint])) == 0
    report_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("test report:")
    )
    check_report(Path(report_line.split(": ", 1)[1]), n_questions=2)

    scores = tmp_path / "scores.csv"
    assert main(strs(["predict", *args, "--ckpt_path", checkpoint, "--scores.output", scores])) == 0
    check_scores(scores, synthetic_store)


def test_multilayer_gat_edge_attr(synthetic_store, tmp_path):
    """The multi-layer model on two layers, GAT on per-head edge features."""
    args = run_args(
        synthetic_store, tmp_path,
        "--data.graph.block", "null", "--data.graph.blocks", "[0,1]",
        "--data.graph.head_mode", "heads",
        "--model", "training.models.MultiLayerClassifier", "--model.conv", "gat",
        "--model.sequence", "transformer", "--trainer.max_epochs", 1,
    )  # fmt: skip
    assert main(strs(["fit", *args])) == 0
    assert best_checkpoint(tmp_path).exists()


def test_charm_config_fits_and_tests_on_all_layer_graphs(synthetic_store, tmp_path, capsys):
    args = run_args(synthetic_store, tmp_path, "--data.graph.node_features", "both")
    args[1] = REPO / "configs" / "training" / "charm.yaml"  # instead of gcn.yaml
    args[args.index("--data.graph.block") + 1] = "null"
    assert main(strs(["fit", *args])) == 0
    assert main(strs(["test", *args, "--ckpt_path", best_checkpoint(tmp_path)])) == 0
    report_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("test report:")
    )
    report = check_report(Path(report_line.split(": ", 1)[1]))
    options = report["data"]["graph_options"]
    assert options["blocks"] == [0, 1] and options["combine"] == "union"
    hparams = torch.load(best_checkpoint(tmp_path), weights_only=False)["hyper_parameters"]
    assert hparams["in_channels"] == 32 + 2 * 4 and hparams["edge_dim"] == 2 * 4


def test_custom_detector_example_trains_and_scores_its_own_model(synthetic_store, tmp_path):
    command = [
        sys.executable, REPO / "examples" / "custom_detector.py", "--traces", synthetic_store,
        "--root", tmp_path / "graphs", "--epochs", 2, "--split-ratios", 0.34, 0.33, 0.33,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(strs(command), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2/2/2 train/val/test graphs; best val AUROC ")
    assert 0.0 <= float(done.stdout.rsplit("test AUROC ", 1)[1]) <= 1.0


def test_sweep_layers_and_baselines(synthetic_store, tmp_path):
    args = run_args(synthetic_store, tmp_path, "--trainer.max_epochs", 1)
    assert main(strs(["sweep-layers", "--output", tmp_path / "sweep", *args])) == 0
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sweep["layers"] == [0, 1]  # every stored block of the synthetic store
    for result in sweep["results"]:
        check_report(Path(result["report"]), n_questions=2)
    assert (tmp_path / "sweep" / "sweep_auroc.png").read_bytes()[:8] == PNG_MAGIC

    report = sweep["results"][1]["report"]  # layer 1, the layer of `args`
    out = tmp_path / "baselines"
    assert main(strs(["baselines", "--output", out, "--reports", report, *args])) == 0
    table = json.loads((out / "baselines.json").read_text())
    assert set(table["detectors"]) == {
        "GCNClassifier (block 1, mean)", "mean_logprob", "max_entropy", "probe_layer1",
    }  # fmt: skip
    assert (
        table["data"]["split_sha256"]
        == json.loads(Path(report).read_text())["data"]["split_sha256"]
    )
    assert (
        (out / "baselines.md")
        .read_text()
        .startswith("labels: index [synthetic] (6/6 labelled)\n\n| detector | AUROC")
    )


def test_baselines_on_labels_from_a_judgement_file(synthetic_store, tmp_path):
    store = TraceStore(synthetic_store)
    rows = [
        judgement(qid, store.rows[qid].generated_answer_clean, 1 - store.rows[qid].label)
        for qid in store.question_ids
    ]
    path = write_jsonl(tmp_path / "flipped.jsonl", rows)
    out = tmp_path / "baselines"
    args = run_args(synthetic_store, tmp_path, "--data.labels", path)
    assert main(strs(["baselines", "--output", out, *args])) == 0
    table = json.loads((out / "baselines.json").read_text())
    assert table["data"]["labels"] == f"{path} [external:panel] (6/6 labelled)"
    assert (out / "baselines.md").read_text().startswith(f"labels: {path} [external:panel]")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.class_path", "training.models.Nope"], "has no attribute 'Nope'"),
        (["--data.traces", "/nonexistent/store"], "is not a trace store"),
        (["--data.graph.blocks", "[0]"], "set one of block (1) and blocks ([0])"),
        (["--data.graph.block", "7"], "block 7 is not stored"),
        (["--model.init_args.lr", "-0.01"], "--model.init_args.lr must be > 0"),
    ],
    ids=["unknown-model", "missing-store", "layer-and-layers", "missing-layer", "negative-lr"],
)
def test_bad_config_is_one_line_error(synthetic_store, tmp_path, capsys, extra, message):
    assert main(strs(["fit", *run_args(synthetic_store, tmp_path), *extra])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_config_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training", "fit", "--config", str(GCN),
         "--data.traces", str(tmp_path / "missing"), "--data.root", str(tmp_path / "graphs")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_config_paths_name_the_folder_they_are_read_from(tmp_path):
    """configs/ hold paths relative to the repository root: run from elsewhere, the error says
    where it looked and how relative paths resolve."""
    result = subprocess.run(
        [sys.executable, "-m", "training", "fit", "--config", str(GCN)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    err = result.stderr.strip().splitlines()[-1]
    assert str(tmp_path / "traces_data" / "smollm2_135M_demo") in err
    assert "read from the current directory" in err


def contradiction(capsys, args: list, checkpoint: Path, *extra) -> str:
    assert main(strs(["test", *args, "--ckpt_path", checkpoint, *extra])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    return err


def test_test_refuses_a_spec_that_contradicts_the_checkpoint(synthetic_store, tmp_path, capsys):
    args = run_args(synthetic_store, tmp_path, "--trainer.max_epochs", 1)
    fitted = python_m_training("fit", *args, cwd=tmp_path, timeout=300)  # as a user sees it
    for notice in ("tensorboardX", "💡", "LeafSpec", "is deprecated"):
        assert notice not in fitted.stdout + fitted.stderr, notice
    checkpoint = best_checkpoint(tmp_path)

    gat = [*args, "--config", REPO / "configs" / "training" / "gat.yaml"]
    err = contradiction(capsys, gat, checkpoint)
    assert (
        "--model training.models.GATClassifier (checkpoint: training.models.GCNClassifier)" in err
    )
    err = contradiction(capsys, args, checkpoint, "--model.init_args.hidden_channels", 128)
    assert "--model.init_args.hidden_channels 128 (checkpoint: 64)" in err
    err = contradiction(capsys, args, checkpoint, "--data.graph.block", 0)
    assert "--data.graph.block 0 (checkpoint: 1)" in err and str(checkpoint) in err
    assert not list((tmp_path / "runs").rglob("report.json"))

    err = contradiction(capsys, args, tmp_path / "missing.ckpt")
    assert "missing.ckpt: no such file" in err
    err = contradiction(capsys, args, GCN)
    assert "is not a readable checkpoint" in err
    assert main(strs(["test", *args, "--ckpt_path", checkpoint])) == 0  # the matching spec


def python_m_training(*args, cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "training", *strs(list(args))],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ddp_two_cpu_processes(synthetic_store, tmp_path):
    """The same config under Lightning's DDP with two CPU processes (a subprocess: DDP relaunches
    the command line once per rank)."""
    args = run_args(synthetic_store, tmp_path, "--trainer.max_epochs", 2)
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", 2, "--trainer.accelerator", "cpu"]
    python_m_training("fit", *args, *ddp, cwd=tmp_path, timeout=300)
    checkpoint = best_checkpoint(tmp_path)
    scores = tmp_path / "scores.csv"
    python_m_training(
        "predict", *args, *ddp, "--ckpt_path", checkpoint, "--scores.output", scores,
        cwd=tmp_path, timeout=300,
    )  # fmt: skip
    check_scores(scores, synthetic_store)


@pytest.mark.slow
@pytest.mark.end_to_end
def test_round_trip_on_real_smollm2_traces(smollm2_demo_store, tmp_path):
    """Extraction → fit → test → predict from the command line on 20 real SmolLM2 traces of the
    bundled demo questions: the one real-model test of ``make test``, so it needs no shared data.

    Test gets 40% of the traces so that it is likely to hold both classes (AUROC is checked
    when it does, reported undefined if not).
    """
    args = [
        "--config", GCN, "--data.traces", smollm2_demo_store,
        "--data.root", tmp_path / "graphs", "--data.split_ratios", "[0.3,0.3,0.4]",
        "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_epochs", 5,
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    python_m_training("fit", *args, cwd=tmp_path, timeout=600)
    checkpoint = best_checkpoint(tmp_path)
    tested = python_m_training("test", *args, "--ckpt_path", checkpoint, cwd=tmp_path, timeout=600)
    report_line = next(
        line for line in tested.stdout.splitlines() if line.startswith("test report:")
    )
    report = check_report(Path(report_line.split(": ", 1)[1]))
    assert report["data"]["model"] == "smollm2_135M"
    assert report["data"]["graph_options"]["block"] == 15

    predicted = python_m_training(
        "predict", *args, "--ckpt_path", checkpoint, cwd=tmp_path, timeout=600
    )
    scores_line = next(line for line in predicted.stdout.splitlines() if line.startswith("scores:"))
    check_scores(Path(scores_line.split()[1]), smollm2_demo_store)


@pytest.mark.parametrize(
    ("command", "own", "expected"),
    [
        ("sweep-layers", ["--layers", "0", "5", "10"], {"layers": [0, 5, 10]}),
        ("sweep-layers", ["--layers", "[0,5]", "--output", "out"], {"layers": [0, 5]}),
        ("baselines", ["--reports", "a.json", "b.json"], {"reports": ["a.json", "b.json"]}),
        ("baselines", [], {"reports": [], "output": "runs/baselines"}),
    ],
)
def test_commands_on_fit_config_speak_its_dialect(tmp_path, capsys, command, own, expected):
    """sweep-layers' and baselines' own options are flags and YAML keys of the one parser:
    --print_config shows them beside fit's, a config file may set them."""
    assert main(strs([command, "--config", GCN, *own, "--print_config"])) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {key: printed[key] for key in expected} == expected
    assert printed["data"]["graph"]["block"] == 15  # fit's configuration, as read from GCN
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(printed))
    assert main(strs([command, "--config", config, "--print_config"])) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed
