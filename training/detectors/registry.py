"""The trace-feature detectors of the benchmark: name, family, and how its features become test
scores (:mod:`training.detectors.fitting`). Graph detectors are trained separately
(:mod:`training.benchmark`) because they read graphs, not these features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphs import SCORED_GENERATION
from training.detectors.features import StoreFeatures
from training.detectors.fitting import LOGISTIC_GRID, Outcome, Split, fit_select, mlp
from training.detectors.fitting import training_free as choose_score
from training.detectors.sampling import NAMES as SAMPLING

SEQUENCE = ("mean_logprob", "min_logprob", "mean_entropy", "max_entropy")


@dataclass(frozen=True)
class Detector:
    name: str
    family: str
    method: str
    run: Callable[[StoreFeatures, Split, int], Outcome]
    needs_sampling: bool = False
    # What a sparse store (weights below its min_attention not kept) makes approximate.
    sparse_caveat: str | None = None


def _per_layer(features: StoreFeatures, key: str) -> dict[str, np.ndarray]:
    """``{"layer l": array[:, j]}`` along the layer axis of a ``[n, L, ...]`` array."""
    values = features.arrays[key]
    return {f"layer {layer}": values[:, j] for j, layer in enumerate(features.layers)}


def _flat(features: StoreFeatures, *keys: str) -> dict[str, np.ndarray]:
    n = len(features.question_ids)
    return {"+".join(keys): np.concatenate([features.arrays[k].reshape(n, -1) for k in keys], 1)}


def _column(key: str, column: int, name: str) -> Callable[[StoreFeatures, Split, int], Outcome]:
    return lambda f, split, seed: choose_score({name: f.arrays[key][:, column]}, split)


def _question_score(column: int, name: str) -> Callable[[StoreFeatures, Split, int], Outcome]:
    """A score of the whole question (every generation holds it), oriented on the train and
    val questions' generation 0, the answer it is scored against."""

    def run(features: StoreFeatures, split: Split, seed: int) -> Outcome:
        first = split.keep(features.generations == SCORED_GENERATION)
        return choose_score({name: features.arrays["sampling"][:, column]}, first)

    return run


def _layer_score(key: str) -> Callable[[StoreFeatures, Split, int], Outcome]:
    return lambda f, split, seed: choose_score(_per_layer(f, key), split)


def _layer_probe(key: str, classifiers: dict) -> Callable[[StoreFeatures, Split, int], Outcome]:
    return lambda f, split, seed: fit_select(_per_layer(f, key), classifiers, split, seed)


def _flat_classifier(keys: tuple[str, ...], classifiers: dict):
    return lambda f, split, seed: fit_select(_flat(f, *keys), classifiers, split, seed)


MLP = {"mlp 64": mlp(64)}
TRAINING_FREE = "training-free; orientation (and layer) chosen on train+val"

DETECTORS: list[Detector] = [
    *(
        Detector(name, "sequence uncertainty", TRAINING_FREE, _column("sequence", i, name))
        for i, name in enumerate(SEQUENCE)
    ),
    Detector(
        "probe_lr_mean",
        "hidden-state probe",
        "logistic regression on the mean answer state; layer (C=0.1), then C chosen on val",
        _layer_probe("mean_state", LOGISTIC_GRID),
    ),
    Detector(
        "probe_lr_last",
        "hidden-state probe",
        "logistic regression on the last token's state; layer (C=0.1), then C chosen on val",
        _layer_probe("last_state", LOGISTIC_GRID),
    ),
    Detector(
        "probe_mlp_mean",
        "hidden-state probe",
        "MLP (64) on the mean answer state; layer chosen on val (by a logistic probe)",
        _layer_probe("mean_state", MLP),
    ),
    Detector(
        "probe_mlp_last",
        "hidden-state probe",
        "MLP (64) on the last token's state; layer chosen on val (by a logistic probe)",
        _layer_probe("last_state", MLP),
    ),
    Detector("llmcheck_attention", "LLM-Check", TRAINING_FREE, _layer_score("llmcheck_attention")),
    Detector("llmcheck_hidden", "LLM-Check", TRAINING_FREE, _layer_score("llmcheck_hidden")),
    Detector(
        "lookback_lens",
        "Lookback Lens",
        "logistic regression on every (layer, head) lookback ratio; C chosen on val",
        _flat_classifier(("lookback",), LOGISTIC_GRID),
        sparse_caveat="the prompt and answer attention masses miss the weights below min_attention",
    ),
    Detector(
        "lapeigvals",
        "LapEigvals",
        "logistic regression on the top-k Laplacian eigenvalues of every (layer, head); C on val",
        _flat_classifier(("lapeig",), LOGISTIC_GRID),
        sparse_caveat="the in-degrees miss the weights below min_attention",
    ),
    Detector(
        "hallushift",
        "HalluShift",
        "MLP (64) on consecutive-layer shifts + token-probability features",
        _flat_classifier(("shift", "token_probs"), MLP),
        sparse_caveat="the attention rows' shift misses the weights below min_attention",
    ),
    *(
        Detector(name, "sampling", TRAINING_FREE, _question_score(i, name), True)
        for i, name in enumerate(SAMPLING)
    ),
]
