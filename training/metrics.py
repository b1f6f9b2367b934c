"""Detector metrics, shared by the graph models and the baselines so every row of a comparison is
computed by the same code.

The headline is AUROC (threshold-free). Accuracy and F1 need a decision threshold; it is chosen
on the validation split (never on test) and then applied unchanged to test.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    binary_f1_score,
    binary_precision,
    binary_precision_recall_curve,
    binary_recall,
    binary_roc,
)
from torchmetrics.utilities import dim_zero_cat

log = logging.getLogger(__name__)

ThresholdRule = Literal["f1", "youden"]


class ScoreCollector(Metric):
    """Every (probability, label) pair of an epoch.

    Threshold selection and ROC curves need all scores at once, not a running statistic; ``compute``
    concatenates across DDP ranks, so every rank sees the whole split.
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        self.probs.append(probs.detach().float().flatten())
        self.targets.append(targets.detach().long().flatten())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.probs, list) and not self.probs:  # a tensor once synced across ranks
            return torch.empty(0), torch.empty(0, dtype=torch.long)
        return dim_zero_cat(self.probs), dim_zero_cat(self.targets)


def both_classes(targets: torch.Tensor) -> bool:
    return bool(targets.numel()) and 0 < int(targets.sum()) < targets.numel()


def choose_threshold(probs: torch.Tensor, targets: torch.Tensor, rule: ThresholdRule) -> float:
    """The probability cut that maximises F1 (``f1``) or TPR - FPR (``youden``); 0.5 when the
    split has a single class, or no cut is better than chance, so none can be chosen."""
    if not both_classes(targets):
        return 0.5
    if rule == "f1":
        precision, recall, thresholds = binary_precision_recall_curve(probs, targets)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        return float(thresholds[int(f1.argmax())])
    fpr, tpr, thresholds = binary_roc(probs, targets)
    youden = tpr - fpr
    if float(youden.max()) <= 0:
        # No cut beats chance on validation. argmax would take the curve's first point, a cut
        # above every score (1.0) that flags nothing: F1 0 on test whatever the test AUROC.
        log.warning("no threshold beats chance on validation (Youden J <= 0); using 0.5")
        return 0.5
    return float(thresholds[int(youden.argmax())].clamp(max=1.0))


def evaluate(probs: torch.Tensor, targets: torch.Tensor, threshold: float) -> dict[str, float]:
    """Every metric of a report. AUROC/AUPRC are NaN on a single-class split (undefined, not 0)."""
    probs, targets = probs.float(), targets.long()
    ranked = both_classes(targets)
    # ``>=`` as in the curves the threshold was read from (torchmetrics' own cut is ``>``).
    predicted = (probs >= threshold).long()
    return {
        "auroc": float(binary_auroc(probs, targets)) if ranked else math.nan,
        "auprc": float(binary_average_precision(probs, targets)) if ranked else math.nan,
        "accuracy": float(binary_accuracy(predicted, targets)),
        "f1": float(binary_f1_score(predicted, targets)),
        "precision": float(binary_precision(predicted, targets)),
        "recall": float(binary_recall(predicted, targets)),
        "threshold": float(threshold),
        "n": int(targets.numel()),
        "n_hallucinated": int(targets.sum()),
    }


def roc_points(probs: torch.Tensor, targets: torch.Tensor) -> dict[str, list[float]]:
    """The ROC curve as plain lists (for the report JSON and the plot)."""
    if not both_classes(targets):
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thresholds = binary_roc(probs.float(), targets.long())
    return {
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "thresholds": thresholds.clamp(max=1.0).tolist(),
    }


def auroc_interval(
    probs: torch.Tensor, targets: torch.Tensor, resamples: int = 1000, seed: int = 0
) -> list[float] | None:
    """95% bootstrap interval of AUROC (resampling within each class, so every resample has
    both). Test splits here hold tens of questions, and a few minority-class answers make the
    point estimate move by tenths: the interval says how much."""
    if not both_classes(targets):
        return None
    generator = torch.Generator().manual_seed(seed)
    positives, negatives = probs[targets == 1], probs[targets == 0]
    chunk = max(1, 2**24 // (len(positives) * len(negatives)))  # bounded memory
    values = []
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        pos = positives[torch.randint(len(positives), (n, len(positives)), generator=generator)]
        neg = negatives[torch.randint(len(negatives), (n, len(negatives)), generator=generator)]
        # AUROC = P(a positive outscores a negative), ties counting one half.
        greater = (pos[:, :, None] > neg[:, None, :]).float()
        ties = (pos[:, :, None] == neg[:, None, :]).float()
        values.append((greater + 0.5 * ties).mean((1, 2)))
    values = torch.cat(values)
    low, high = torch.quantile(values, torch.tensor([0.025, 0.975]))
    return [float(low), float(high)]
