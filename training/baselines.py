"""Trace-only baseline detectors, scored on the graph detectors' own test split.

Each baseline turns a trace into a few numbers, a logistic regression fitted on the training
split turns those into a probability of hallucination, the decision threshold is chosen on
validation by the same rule as the graph models, and the same :func:`training.metrics.evaluate`
scores test. That makes every row of the table comparable, and it learns each score's direction
from training data instead of assuming it.

- ``mean_logprob``: mean log-probability of the answer tokens (low confidence → hallucination).
- ``max_entropy``: largest next-token entropy over the answer tokens.
- ``probe_layer{l}``: a linear probe on the mean answer hidden state of the graph layer
  (the detector's own node features, without the graph).

``python -m training baselines --config configs/training/gcn.yaml [--reports R.json ...]``
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common import UserError, atomic_write_text, read_json
from graphs import SPLITS, new_names
from training.data import HallucinationGraphDataModule
from training.detectors.scores import sequence_uncertainty
from training.lightning_cli import PROG, Option, parse_command
from training.metrics import (
    ThresholdRule,
    auroc_interval,
    choose_threshold,
    evaluate,
    roc_points,
)
from training.report import environment, plot_roc, write_json

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Trace-only baselines on the test split of a training config, side by side with graph "
    f"detectors' test reports. Other flags (--config, --data.*) are read as by `{PROG} fit`."
)
# Inverse L2 strengths tried for the hidden-state probe; the best validation AUROC wins.
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0)


def trace_features(datamodule: HallucinationGraphDataModule) -> dict[str, dict[str, np.ndarray]]:
    """``{"mean_logprob": {split: [n, 1]}, "max_entropy": {split: [n, 1]}}`` from the store's
    per-token scores (no layer is loaded); an empty answer ranks as least confident."""
    store = datamodule.store

    def scores(qid: str) -> list[float]:
        stats = store.answer_stats(qid)
        uncertainty = sequence_uncertainty(stats.logprobs, stats.entropy)
        return [float(uncertainty[0]), float(uncertainty[3])]  # mean log-prob, max entropy

    out: dict[str, dict[str, np.ndarray]] = {"mean_logprob": {}, "max_entropy": {}}
    for split in SPLITS:
        rows = np.array([scores(qid) for qid in datamodule.datasets[split].question_ids])
        out["mean_logprob"][split], out["max_entropy"][split] = rows[:, :1], rows[:, 1:]
    return out


def mean_answer_state(datamodule: HallucinationGraphDataModule) -> dict[str, np.ndarray]:
    """``{split: [n, hidden]}``: each graph's node features averaged over its answer tokens."""
    out = {}
    for split in SPLITS:
        vectors = []
        for graph in datamodule.datasets[split]:
            answer = graph.x[graph.is_answer] if bool(graph.is_answer.any()) else graph.x
            vectors.append(answer.mean(0))
        out[split] = torch.stack(vectors).numpy()
    return out


def fit_logistic(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    rule: ThresholdRule,
    c_values: tuple[float, ...] = (1.0,),
) -> tuple[dict[str, float], torch.Tensor, dict]:
    """Standardise + logistic regression on train, C and threshold on val, metrics on test."""
    best = None
    for c in c_values:
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        )
        model.fit(features["train"], labels["train"])
        val = torch.tensor(model.predict_proba(features["val"])[:, 1])
        val_auroc = evaluate(val, torch.tensor(labels["val"]), 0.5)["auroc"]
        if best is None or val_auroc > best[0]:
            best = (val_auroc, c, model, val)
    _, c, model, val = best
    threshold = choose_threshold(val, torch.tensor(labels["val"]), rule)
    test = torch.tensor(model.predict_proba(features["test"])[:, 1]).float()
    metrics = evaluate(test, torch.tensor(labels["test"]), threshold)
    return metrics, test, {"C": c}


def run_baselines(datamodule: HallucinationGraphDataModule, rule: ThresholdRule) -> dict[str, dict]:
    """Every baseline's test metrics, ROC points and settings, keyed by name."""
    labels = {split: np.array(datamodule.datasets[split].labels) for split in SPLITS}
    test_labels = torch.tensor(labels["test"])
    candidates = {name: (features, (1.0,)) for name, features in trace_features(datamodule).items()}
    block = datamodule.spec.block
    if block is not None:  # named as before issue 22, so that reports keep their rows
        candidates[f"probe_layer{block}"] = (mean_answer_state(datamodule), PROBE_C)
    results = {}
    for name, (features, c_values) in candidates.items():
        metrics, scores, settings = fit_logistic(features, labels, rule, c_values)
        results[name] = {
            "metrics": metrics,
            "auroc_ci95": auroc_interval(scores, test_labels),
            "settings": settings,
            "roc": roc_points(scores, test_labels),
        }
        log.info("%s: test AUROC %.3f", name, metrics["auroc"])
    return results


def markdown_table(rows: dict[str, dict]) -> str:
    """``rows[name] = {"metrics": {...}, "auroc_ci95": [low, high] | None}``."""
    header = (
        "| detector | AUROC | AUROC 95% CI | AUPRC | F1 | accuracy | threshold (val) | n test |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]

    def fmt(value) -> str:
        return "n/a" if value is None or value != value else f"{value:.3f}"

    for name, row in rows.items():
        m, ci = row["metrics"], row["auroc_ci95"]
        interval = f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "n/a"
        rest = [fmt(m[key]) for key in ("auprc", "f1", "accuracy", "threshold")]
        lines.append(f"| {name} | {fmt(m['auroc'])} | {interval} | {' | '.join(rest)} | {m['n']} |")
    return "\n".join(lines) + "\n"


def _detector_reports(paths: list[str], split_hash: str) -> dict[str, dict]:
    """Graph detectors' test reports, refused unless they were scored on the same questions.
    Every report is a row: reports of one detector (several seeds) are told apart by their seed,
    then by their file."""
    named = []
    for path in paths:
        report = read_json(path)
        if report["data"]["split_sha256"] != split_hash:
            raise UserError(
                f"{path} was tested on other questions (split hash "
                f"{report['data']['split_sha256'][:12]}, here {split_hash[:12]}): use the same "
                "store, split seed and ratios"
            )
        options = new_names(report["data"]["graph_options"])  # a report from before issue 22
        if options.get("block") is not None:
            scope = f"block {options['block']}"
        elif options.get("combine") == "union":
            scope = f"union of {len(options['blocks'])} blocks"
        else:
            scope = "blocks " + ",".join(str(block) for block in options["blocks"])
        named.append((f"{report['detector']} ({scope}, {options['head_mode']})", path, report))
    counts = Counter(name for name, _, _ in named)
    rows = {}
    for name, path, report in named:
        if counts[name] > 1:
            name = f"{name}, seed {report.get('config', {}).get('seed_everything')}"
        if name in rows:
            name = f"{name}, {path}"
        rows[name] = report
    return rows


def main(argv: list[str]) -> None:
    options = [
        Option("output", Path, Path("runs/baselines"), "folder for baselines.{md,json} and "
               "roc_baselines.png"),
        Option("reports", list[str], [], "report.json files of `test` to show alongside"),
    ]  # fmt: skip
    config, _ = parse_command("baselines", DESCRIPTION, options, argv)
    datamodule = HallucinationGraphDataModule(**config.data.as_dict())
    rule = config.model.init_args.threshold_rule
    datamodule.prepare_data()
    datamodule.setup("test")
    fingerprint = datamodule.fingerprint("test")
    detectors = _detector_reports(config.reports, fingerprint["split_sha256"])
    baselines = run_baselines(datamodule, rule)

    rows = {
        name: {"metrics": result["metrics"], "auroc_ci95": result.get("auroc_ci95")}
        for name, result in (detectors | baselines).items()
    }
    curves = {
        name: {**report["roc_curve"], "auroc": report["metrics"]["auroc"]}
        for name, report in detectors.items()
    }
    curves.update(
        {name: {**r["roc"], "auroc": r["metrics"]["auroc"]} for name, r in baselines.items()}
    )
    table = markdown_table(rows)
    write_json(
        config.output / "baselines.json",
        {
            "threshold_rule": rule,
            "data": fingerprint,
            "detectors": rows,
            "baselines": baselines,
            "reports": config.reports,
            **environment(),
        },
    )
    generations = f"\n\n{fingerprint['generations']}" if fingerprint["generations"] else ""
    table = f"labels: {fingerprint['labels']}{generations}\n\n{table}"
    atomic_write_text(config.output / "baselines.md", table)
    plot_roc(
        config.output / "roc_baselines.png",
        curves,
        title=f"{fingerprint['model']}, {Path(fingerprint['traces']).name}\ntest: "
        f"{fingerprint['n_hallucinated']} hallucinated / "
        f"{fingerprint['n'] - fingerprint['n_hallucinated']} correct answers\n"
        f"labels: {fingerprint['labels']}",
    )
    print(table, end="")
    print(f"written: {config.output / 'baselines.md'}, baselines.json, roc_baselines.png")
