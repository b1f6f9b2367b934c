"""Callbacks that turn a run into files: the test report and the prediction scores."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback

from common import atomic_open
from extraction.store import file_sha256
from training.metrics import auroc_interval, roc_points
from training.report import REPORT, ROC_FIGURE, environment, plot_roc, write_json

SCORES = "scores.csv"


class ConfigAndReport(SaveConfigCallback):
    """Saves the resolved config (as Lightning does) and, after ``test``, writes ``report.json``
    (every metric, the config, the data fingerprint, the ROC points) and ``roc_curve.png``
    into the run's log dir. Only rank 0 writes; the scores were already gathered from all ranks.
    """

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        results = getattr(pl_module, "test_results", None)
        if not trainer.is_global_zero or results is None:
            return
        path = write_test_report(
            Path(trainer.log_dir or trainer.default_root_dir),
            pl_module,
            results,
            data=trainer.datamodule.fingerprint("test"),
            config=yaml.safe_load(self.parser.dump(self.config, skip_none=False)),
            checkpoint=trainer.ckpt_path,
        )
        print(f"test report: {path}\nROC curve:   {path.parent / ROC_FIGURE}")


def write_test_report(
    log_dir: Path,
    module: LightningModule,
    results: dict,
    data: dict,
    config: dict,
    checkpoint: str | None,
) -> Path:
    probs, targets, metrics = results["probs"], results["targets"], results["metrics"]
    roc = roc_points(probs, targets)
    predicted = probs >= metrics["threshold"]
    operating = None
    if roc["fpr"]:
        operating = {
            "fpr": float(predicted[targets == 0].float().mean()),
            "tpr": float(predicted[targets == 1].float().mean()),
            "threshold": metrics["threshold"],
        }
    detector = type(module).__name__
    n_correct = metrics["n"] - metrics["n_hallucinated"]
    graph_scope = data["graph_options"]["block"]
    if graph_scope is None:
        graph_scope = data["graph_options"]["blocks"]
    plot_roc(
        log_dir / ROC_FIGURE,
        {detector: {"fpr": roc["fpr"], "tpr": roc["tpr"], "auroc": metrics["auroc"]}},
        title=f"{detector}, block {graph_scope}\n{data['model']}, {Path(data['traces']).name}, "
        f"test: {metrics['n_hallucinated']} hallucinated / {n_correct} correct\n"
        f"labels: {data['labels']}",
        operating=operating,
    )
    report = {
        "detector": detector,
        "metrics": metrics,
        "auroc_ci95": auroc_interval(probs, targets),
        "threshold_rule": module.hparams.threshold_rule,
        "checkpoint": checkpoint,
        "checkpoint_sha256": file_sha256(Path(checkpoint))
        if checkpoint and Path(checkpoint).is_file()
        else None,
        "data": data,
        "roc_curve": {"figure": ROC_FIGURE, **roc},
        "config": config,
        **environment(),
    }
    return write_json(log_dir / REPORT, report)


class ScoresWriter(BasePredictionWriter):
    """Writes ``predict`` results as CSV: ``question_id,score,predicted_label``.

    ``score`` is the probability that the answer is hallucinated; ``predicted_label`` applies the
    checkpoint's validation-chosen threshold (1 = hallucinated).

    Args:
        output: CSV path; default ``scores.csv`` in the run's log dir.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions, batch_indices
    ) -> None:
        rows = [
            (qid, float(score), int(label))
            for batch in predictions
            for qid, score, label in zip(
                batch["question_id"], batch["score"].tolist(), batch["label"].tolist(), strict=True
            )
        ]
        if dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero:
            return
        # A distributed sampler pads the last batch with repeats: keep one row per question.
        unique = dict((qid, (qid, score, label)) for qid, score, label in rows)
        path = Path(self.output or Path(trainer.log_dir or trainer.default_root_dir) / SCORES)
        with atomic_open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["question_id", "score", "predicted_label"])
            writer.writerows(sorted(unique.values()))
        threshold = float(torch.as_tensor(pl_module.threshold))
        print(f"scores: {path} ({len(unique)} questions, threshold {threshold:.3f})")
