"""Two-class effect sizes and tests: Cliff's delta with a question-level bootstrap interval, the
Mann–Whitney U test and the Benjamini–Hochberg correction.

Why Cliff's delta: it is rank-based like the test beside it (``delta = 2 U / (n1 n2) - 1``, so
the effect and its p-value never disagree), it does not care about the scale or skew of a
statistic (attention masses, degrees and eigenvalues live on very different scales), it handles
ties, and its sign says which class is larger. It is a linear map of the AUROC of the statistic
used alone as a detector (``AUROC = (delta + 1) / 2``), which is reported too, so a statistic
can be set against a trained detector's AUROC directly.

Why resample questions: the unit of independent evidence is a question. A store with several
generations per question has correlated traces; the bootstrap draws questions with replacement
and takes all of a drawn question's traces, so the interval is honest either way (with one trace
per question it is the plain bootstrap). The Mann–Whitney p-value assumes independent traces:
with several generations per question it is optimistic, and the interval is the safer guide.

Why Benjamini–Hochberg: the comparison screens every (layer, statistic) cell, a few hundred
strongly correlated tests (a statistic at neighbouring layers), to say where to look. BH
controls the false discovery rate, which is the relevant error for screening, and stays valid
under the positive dependence these tests have; Holm's family-wise control would hide real
differences to guard against a single false one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import false_discovery_control, mannwhitneyu


def cliffs_delta(hallucinated: np.ndarray, correct: np.ndarray) -> float:
    """``P(X_h > X_c) - P(X_h < X_c)`` over all pairs: +1 when every hallucinated value is
    larger, -1 when every one is smaller, 0 for no difference."""
    h = np.asarray(hallucinated, dtype=float)[:, None]
    c = np.asarray(correct, dtype=float)[None, :]
    return float(np.mean(np.sign(h - c)))


def weighted_cliffs_delta(values: np.ndarray, is_hallucinated: np.ndarray, weights: np.ndarray):
    """Cliff's delta for many weightings of the same values at once.

    Args:
        values: ``[n]`` one statistic of ``n`` traces.
        is_hallucinated: ``[n]`` bool, the class of each trace.
        weights: ``[B, n]`` how many times each trace counts in each of ``B`` resamples.

    Returns:
        ``[B]`` deltas, nan for a resample without one of the classes. One sort and two
        cumulative sums: ``O(B n)`` after sorting, instead of ``O(B n^2)`` pairs.
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    hallucinated = is_hallucinated[order]
    w_h = weights[:, order] * hallucinated
    w_c = weights[:, order] * ~hallucinated
    # Ties: the correct weight strictly below a value and the weight equal to it.
    first = np.searchsorted(sorted_values, sorted_values, side="left")
    last = np.searchsorted(sorted_values, sorted_values, side="right")
    cumulative = np.concatenate([np.zeros((len(weights), 1)), np.cumsum(w_c, axis=1)], axis=1)
    below = cumulative[:, first]
    tied = cumulative[:, last] - below
    greater_pairs = (w_h * (below + 0.5 * tied)).sum(axis=1)  # U of the hallucinated class
    n_h, n_c = w_h.sum(axis=1), w_c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_h > 0) & (n_c > 0), 2 * greater_pairs / (n_h * n_c) - 1, np.nan)


def unit_resample_weights(
    units: Sequence[str], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``[B, n]`` multiplicities of ``n`` traces when whole units (questions) are drawn with
    replacement: each resample draws as many units as there are, and a drawn unit brings all its
    traces."""
    _, unit_index = np.unique(np.asarray(units), return_inverse=True)
    n_units = int(unit_index.max()) + 1 if len(unit_index) else 0
    counts = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=n_resamples)
    return counts[:, unit_index].astype(float)


def compare_classes(
    values: np.ndarray, is_hallucinated: np.ndarray, resample_weights: np.ndarray
) -> dict:
    """Medians, Cliff's delta with its 95% bootstrap interval, AUROC and the two-sided
    Mann–Whitney U test of one statistic, nan traces left out.

    ``resample_weights`` is :func:`unit_resample_weights` of all traces (the same draws for
    every statistic, so intervals are comparable); ``p_value`` is nan when a class is empty or
    every value is equal.
    """
    known = ~np.isnan(values)
    values, is_hallucinated = values[known], is_hallucinated[known]
    weights = resample_weights[:, known]
    hallucinated, correct = values[is_hallucinated], values[~is_hallucinated]
    result = {
        "n_hallucinated": len(hallucinated),
        "n_correct": len(correct),
        "median_hallucinated": float(np.median(hallucinated)) if len(hallucinated) else np.nan,
        "median_correct": float(np.median(correct)) if len(correct) else np.nan,
        "cliffs_delta": np.nan,
        "ci95": [],
        "auroc": np.nan,
        "mannwhitney_u": np.nan,
        "p_value": np.nan,
    }
    if not len(hallucinated) or not len(correct):
        return result
    test = mannwhitneyu(hallucinated, correct, alternative="two-sided")
    delta = 2 * float(test.statistic) / (len(hallucinated) * len(correct)) - 1
    boot = weighted_cliffs_delta(values, is_hallucinated, weights)
    result.update(
        cliffs_delta=delta,
        ci95=np.nanpercentile(boot, [2.5, 97.5]).tolist() if np.isfinite(boot).any() else [],
        auroc=(delta + 1) / 2,
        mannwhitney_u=float(test.statistic),
        p_value=float(test.pvalue) if values.min() < values.max() else np.nan,
    )
    return result


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """BH-adjusted p-values (q-values) of every test; nan p-values stay nan and do not count
    as tests."""
    p = np.asarray(p_values, dtype=float)
    q = np.full_like(p, np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = false_discovery_control(p[tested], method="bh")
    return q
