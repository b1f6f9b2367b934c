"""Benchmark statistics: per-seed metrics, their mean and spread, and the paired bootstrap of an
AUROC difference between two detectors scored on the same test questions."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from training.detectors.fitting import auroc


def seed_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC of the hallucinated class, and AUPRC of the correct class (the informative
    one when almost every answer is hallucinated); NaN where a class is missing."""
    both = len(set(labels.tolist())) == 2
    return {
        "auroc": auroc(scores, labels),
        "auprc": float(average_precision_score(labels, scores)) if both else math.nan,
        "auprc_correct": float(average_precision_score(1 - labels, -scores)) if both else math.nan,
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (sd 0 for one seed; NaNs ignored)."""
    finite = np.array([v for v in values if v is not None and not math.isnan(v)])
    if finite.size == 0:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0


def _stratified_resamples(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, len(labels)]`` indices: positives first, then negatives, each drawn with
    replacement within its class (every resample keeps both classes)."""
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    return np.concatenate(
        [
            rng.choice(positives, (n, len(positives))),
            rng.choice(negatives, (n, len(negatives))),
        ],
        axis=1,
    )


def _resampled_auroc(scores: np.ndarray, indices: np.ndarray, n_pos: int) -> np.ndarray:
    ranks = rankdata(scores[indices], axis=1)  # ties share their mean rank
    n_neg = indices.shape[1] - n_pos
    return (ranks[:, :n_pos].sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def paired_bootstrap(
    detector: list[np.ndarray],
    reference: list[np.ndarray],
    labels: list[np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float] | None:
    """Mean over seeds of ``AUROC(detector) - AUROC(reference)``, with a 95% interval from
    resampling each seed's test questions (within class, the same draw for both detectors).
    None when no seed has both classes."""
    rng = np.random.default_rng(seed)
    differences = []
    for scores, ref, y in zip(detector, reference, labels, strict=True):
        n_pos = int(y.sum())
        if n_pos in (0, len(y)):
            continue
        indices = _stratified_resamples(y, resamples, rng)
        differences.append(
            _resampled_auroc(scores, indices, n_pos) - _resampled_auroc(ref, indices, n_pos)
        )
    if not differences:
        return None
    point = float(
        np.nanmean(
            [auroc(s, y) - auroc(r, y) for s, r, y in zip(detector, reference, labels, strict=True)]
        )
    )
    low, high = np.quantile(np.mean(differences, axis=0), [0.025, 0.975])
    return {"difference": point, "low": float(low), "high": float(high)}
