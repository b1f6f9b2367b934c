"""Cliff's delta, its question-level bootstrap, and the Benjamini–Hochberg correction on hand
computed and planted data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphs.effects import (
    benjamini_hochberg,
    cliffs_delta,
    compare_classes,
    unit_resample_weights,
    weighted_cliffs_delta,
)


def test_cliffs_delta_by_hand():
    # Of the 9 pairs, 8 have the hallucinated value larger and one (3 vs 3) is a tie.
    assert cliffs_delta([3, 4, 5], [1, 2, 3]) == pytest.approx(8 / 9)
    assert cliffs_delta([1, 2], [3, 4]) == -1
    assert cliffs_delta([1, 2], [1, 2]) == 0


def test_weighted_delta_equals_repeating_the_traces():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=40).astype(float)  # many ties
    is_h = rng.random(40) < 0.4
    weights = rng.integers(0, 4, size=(5, 40)).astype(float)
    got = weighted_cliffs_delta(values, is_h, weights)
    for row, delta in zip(weights, got, strict=True):
        repeated = np.repeat(values, row.astype(int))
        classes = np.repeat(is_h, row.astype(int))
        assert delta == pytest.approx(cliffs_delta(repeated[classes], repeated[~classes]))
    ones = weighted_cliffs_delta(values, is_h, np.ones((1, 40)))
    assert ones[0] == pytest.approx(cliffs_delta(values[is_h], values[~is_h]))
    assert math.isnan(weighted_cliffs_delta(values, is_h, (~is_h)[None].astype(float))[0])


def test_planted_shift_is_found_with_its_theoretical_effect():
    # N(1, 1) vs N(0, 1): P(X_h > X_c) = Φ(1/√2) = 0.7602, so δ = 0.5205 and AUROC = 0.7602.
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(1, 1, 400), rng.normal(0, 1, 400)])
    is_h = np.arange(800) < 400
    weights = unit_resample_weights([f"q{i}" for i in range(800)], 1000, rng)
    result = compare_classes(values, is_h, weights)
    assert result["ci95"][0] < 0.5205 < result["ci95"][1]
    assert result["ci95"][1] - result["ci95"][0] < 0.2
    assert result["auroc"] == pytest.approx((result["cliffs_delta"] + 1) / 2)
    assert result["cliffs_delta"] == pytest.approx(cliffs_delta(values[is_h], values[~is_h]))
    assert result["p_value"] < 1e-20
    assert result["n_hallucinated"] == result["n_correct"] == 400


def test_no_difference_and_missing_values():
    rng = np.random.default_rng(2)
    values = rng.normal(size=300)
    values[:10] = np.nan  # undefined for some graphs: left out
    is_h = rng.random(300) < 0.5
    weights = unit_resample_weights([str(i) for i in range(300)], 500, rng)
    result = compare_classes(values, is_h, weights)
    assert result["n_hallucinated"] + result["n_correct"] == 290
    assert result["ci95"][0] < 0 < result["ci95"][1] and result["p_value"] > 0.05


def test_bootstrap_draws_whole_questions():
    units = ["a", "a", "b", "c", "c", "c"]
    weights = unit_resample_weights(units, 200, np.random.default_rng(0))
    assert weights.shape == (200, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    draws = weights[:, [0, 2, 3]]  # one column per unit: draws of that unit
    assert (draws.sum(axis=1) == 3).all()


def test_generations_of_one_question_do_not_narrow_the_interval():
    # Each question answered three times with the same statistic: counted as one unit the
    # interval is that of the 60 questions; counted as 180 independent traces it shrinks by √3.
    rng = np.random.default_rng(3)
    values = np.repeat(np.concatenate([rng.normal(0.5, 1, 30), rng.normal(0, 1, 30)]), 3)
    is_h = np.repeat(np.arange(60) < 30, 3)
    questions = np.repeat([f"q{i}" for i in range(60)], 3)
    grouped = compare_classes(values, is_h, unit_resample_weights(questions, 2000, rng))
    naive = compare_classes(values, is_h, unit_resample_weights(np.arange(180), 2000, rng))
    width = lambda result: result["ci95"][1] - result["ci95"][0]  # noqa: E731
    assert grouped["cliffs_delta"] == naive["cliffs_delta"]
    assert width(grouped) > 1.5 * width(naive)


def test_benjamini_hochberg_by_hand():
    # Sorted p 0.01, 0.03, 0.04, 0.2 (m = 4): p·m/rank = 0.04, 0.06, 0.0533, 0.2, then the
    # running minimum from the top.
    q = benjamini_hochberg([0.04, 0.01, np.nan, 0.2, 0.03])
    assert q[[1, 4, 0, 3]].tolist() == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert math.isnan(q[2])


def test_benjamini_hochberg_on_planted_data():
    rng = np.random.default_rng(4)
    planted = np.full(20, 1e-6)
    null = rng.uniform(size=480)
    q = benjamini_hochberg(np.concatenate([planted, null]))
    assert (q[:20] < 0.05).all()
    assert (q[20:] < 0.05).sum() <= 3  # the false discoveries BH allows (≈ 5% of 20 or fewer)
    assert (q >= np.concatenate([planted, null])).all()
