"""From feature arrays to test scores, everything chosen on train/validation only.

Two ways, both returning :class:`Outcome` (test scores, higher = more likely hallucinated, and
what was chosen):

- :func:`training_free`: a score used as it is; which candidate (e.g. which layer) and which
  orientation (the score or its negative) rank train + validation best.
- :func:`fit_select`: classifiers fitted on train; the candidate input (e.g. the layer) and
  then the classifier setting with the best validation AUROC score test.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

# Inverse L2 strengths tried for every logistic regression (the best validation AUROC wins);
# the first also chooses the layer of every layer probe.
LOGISTIC_C = (1e-1, 1e-2, 1.0)

ClassifierFactory = Callable[[int], Pipeline]


@dataclass
class Split:
    """One split seed: which feature rows and labels are train, val and test."""

    rows: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    def keep(self, mask: np.ndarray) -> Split:
        """The rows (of every split) where ``mask [n features rows]`` is true."""
        kept = {name: mask[rows] for name, rows in self.rows.items()}
        return Split(
            rows={name: rows[kept[name]] for name, rows in self.rows.items()},
            labels={name: labels[kept[name]] for name, labels in self.labels.items()},
        )


@dataclass
class Outcome:
    test_scores: np.ndarray
    settings: dict


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC, NaN when only one class is present (undefined, not 0.5)."""
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else math.nan


def training_free(candidates: dict[str, np.ndarray], split: Split) -> Outcome:
    """``candidates[name] = [n]`` scores; the (name, sign) with the best train + val AUROC."""
    fit_rows = np.concatenate([split.rows["train"], split.rows["val"]])
    fit_labels = np.concatenate([split.labels["train"], split.labels["val"]])
    best = None
    for name, values in candidates.items():
        for sign in (1.0, -1.0):
            value = auroc(sign * values[fit_rows], fit_labels)
            if best is None or value > best[0]:
                best = (value, name, sign)
    value, name, sign = best
    return Outcome(
        sign * candidates[name][split.rows["test"]],
        {"chosen": name, "sign": int(sign), "train_val_auroc": value},
    )


def logistic(c: float) -> ClassifierFactory:
    def make(seed: int) -> Pipeline:
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed),
        )

    return make


def mlp(hidden: int = 64, alpha: float = 1e-2) -> ClassifierFactory:
    def make(seed: int) -> Pipeline:
        return make_pipeline(
            StandardScaler(),
            # L-BFGS: on a few hundred examples ~7x faster than Adam, and as good.
            MLPClassifier((hidden,), alpha=alpha, solver="lbfgs", max_iter=200, random_state=seed),
        )

    return make


LOGISTIC_GRID = {f"logistic C={c:g}": logistic(c) for c in LOGISTIC_C}


def fit_select(
    candidates: dict[str, np.ndarray],
    classifiers: dict[str, ClassifierFactory],
    split: Split,
    seed: int,
) -> Outcome:
    """``candidates[name] = [n, f]`` inputs (e.g. one per layer). A logistic regression
    (C = ``LOGISTIC_C[0]``), fitted on train for every candidate, picks the candidate by
    validation AUROC; then every classifier setting is fitted on that candidate, and the best
    validation AUROC scores test. (Choosing the layer with the cheap linear model keeps an MLP
    probe to one fit per seed: a grid of every layer times every setting costs more CPU than
    the 2-core machine has.)"""
    if len(candidates) > 1:
        selector = {"logistic": logistic(LOGISTIC_C[0])}
        name = _best(candidates, selector, split, seed)[1]
        candidates = {name: candidates[name]}
    value, name, setting, model = _best(candidates, classifiers, split, seed)
    return Outcome(
        model.predict_proba(candidates[name][split.rows["test"]])[:, 1],
        {"chosen": name, "classifier": setting, "val_auroc": value},
    )


def _best(candidates: dict, classifiers: dict, split: Split, seed: int) -> tuple:
    """(val AUROC, candidate, setting, fitted model) of the best validation AUROC."""
    best = None
    for name, values in candidates.items():
        for setting, make in classifiers.items():
            model = make(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(values[split.rows["train"]], split.labels["train"])
            val = auroc(model.predict_proba(values[split.rows["val"]])[:, 1], split.labels["val"])
            if best is None or val > best[0] or math.isnan(best[0]):
                best = (val, name, setting, model)
    return best
