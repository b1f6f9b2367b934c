"""The measurement of ``python -m graphs compare``: every compared trace's graph statistics and
attention map at every compared block (:func:`measure`), and each (block, statistic) cell's
comparison of hallucinated against correct answers (:func:`compare`). Computes; writes nothing.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from extraction.store import TraceStore
from graphs.build import traces_to_graphs
from graphs.effects import benjamini_hochberg, compare_classes, unit_resample_weights
from graphs.spec import GraphSpec
from graphs.statistics import CONTROLS, STATISTICS, graph_statistics

CHUNK_TRACES = 32  # traces whose graphs of one block are built together
PROMPT_BINS = 20  # columns of the attention map over the prompt after its first token
ANSWER_BINS = 5  # rows (answer tokens) and answer columns of the attention map
MAP_COLUMNS = 1 + PROMPT_BINS + ANSWER_BINS  # first token | prompt bins | answer bins


@dataclass
class Measurements:
    """The statistics and attention maps of every compared trace at every compared block."""

    question_ids: list[str]
    units: list[str]  # the question each trace answers (the bootstrap's unit)
    is_hallucinated: np.ndarray  # [n] bool
    layers: list[int]
    values: np.ndarray  # [n, layers, statistics], nan where a statistic is undefined
    maps: np.ndarray  # [n, layers, ANSWER_BINS, MAP_COLUMNS], nan rows for empty bins
    skipped: dict[str, int]


def attention_map(attention, n_prompt_tokens: int) -> np.ndarray:
    """``[ANSWER_BINS, MAP_COLUMNS]`` where the answer tokens' attention goes (head mean, before
    any threshold).

    Rows are the answer tokens in ``ANSWER_BINS`` bins of relative answer position (a row is the
    mean of its tokens; nan when a short answer leaves a bin empty). Columns are the attention
    mass on: the first token (the sink), ``PROMPT_BINS`` bins of relative position over the rest
    of the prompt, and ``ANSWER_BINS`` bins over the answer. Each row sums to 1.
    """
    weights = attention.float().mean(dim=0).numpy()[n_prompt_tokens:]  # [n_answer, T]
    n_answer, seq_len = weights.shape
    column = np.empty(seq_len, dtype=int)
    column[0] = 0
    rest = np.arange(1, n_prompt_tokens)
    column[1:n_prompt_tokens] = 1 + (rest - 1) * PROMPT_BINS // max(n_prompt_tokens - 1, 1)
    answer_position = np.arange(n_answer) * ANSWER_BINS // n_answer
    column[n_prompt_tokens:] = 1 + PROMPT_BINS + answer_position
    per_token = np.zeros((n_answer, MAP_COLUMNS))
    np.add.at(per_token.T, column, weights.T)
    rows = np.zeros((ANSWER_BINS, MAP_COLUMNS))
    np.add.at(rows, answer_position, per_token)
    counts = np.bincount(answer_position, minlength=ANSWER_BINS)[:, None]
    with np.errstate(invalid="ignore"):
        return rows / np.where(counts > 0, counts, np.nan)


def _chunks(items: list[str], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def measure(
    store: TraceStore, layers: list[int], spec: GraphSpec, progress: bool = True
) -> Measurements:
    """Statistics and attention maps of every labelled trace with answer tokens: each block's
    graph by ``spec``'s edge and node rules."""
    rows = store.rows
    labelled = [qid for qid in store.question_ids if rows[qid].label is not None]
    kept = [qid for qid in labelled if rows[qid].n_answer_tokens > 0]
    skipped = {"unlabelled": len(store) - len(labelled), "empty": len(labelled) - len(kept)}
    values = np.full((len(kept), len(layers), len(STATISTICS)), np.nan)
    maps = np.full((len(kept), len(layers), ANSWER_BINS, MAP_COLUMNS), np.nan)
    bar = tqdm(total=len(kept) * len(layers), desc="graphs", unit="graph", disable=not progress)
    with bar:
        start = 0
        for chunk in _chunks(kept, CHUNK_TRACES):
            prompts = [rows[qid].n_prompt_tokens for qid in chunk]
            for position, layer in enumerate(layers):
                attentions = [store.attention(qid, layer) for qid in chunk]
                hiddens = [store.resid_post(qid, layer) for qid in chunk]
                graphs = traces_to_graphs(attentions, hiddens, prompts, spec)
                for offset, graph in enumerate(graphs):
                    trace = start + offset
                    values[trace, position] = list(graph_statistics(graph).values())
                    maps[trace, position] = attention_map(attentions[offset], prompts[offset])
                bar.update(len(chunk))
            start += len(chunk)
    return Measurements(
        question_ids=kept,
        units=[rows[qid].unit for qid in kept],
        is_hallucinated=np.array([rows[qid].label == 1 for qid in kept], dtype=bool),
        layers=list(layers),
        values=values,
        maps=maps,
        skipped=skipped,
    )


def compare(
    measurements: Measurements, n_resamples: int = 1000, seed: int = 0, fdr: float = 0.05
) -> tuple[list[dict], list[str]]:
    """One result per (block, statistic) that varies (one per control, with block None),
    strongest difference (|Cliff's delta|) first, with Benjamini–Hochberg q-values over all of
    them; and the constant statistics."""
    constant = constant_statistics(measurements)
    weights = unit_resample_weights(measurements.units, n_resamples, np.random.default_rng(seed))
    results = []
    for index, name in enumerate(STATISTICS):
        if name in constant:
            continue
        # A control is the same at every block: one cell, block None ("all").
        layers = [None] if name in CONTROLS else measurements.layers
        for position, layer in enumerate(layers):
            values = measurements.values[:, position, index]
            result = compare_classes(values, measurements.is_hallucinated, weights)
            results.append({"statistic": name, "layer": layer, **result})
    q_values = benjamini_hochberg([result["p_value"] for result in results])
    for result, q in zip(results, q_values, strict=True):
        result["q_value"] = float(q)
        result["significant"] = bool(q < fdr)
    results.sort(key=lambda r: (-_magnitude(r["cliffs_delta"]), r["statistic"], r["layer"] or 0))
    return results, constant


def constant_statistics(measurements: Measurements) -> list[str]:
    """Statistics with one value (or none) over every graph: nothing to compare."""
    constant = []
    for index, name in enumerate(STATISTICS):
        finite = measurements.values[..., index]
        finite = finite[~np.isnan(finite)]
        if finite.size == 0 or finite.min() == finite.max():
            constant.append(name)
    return constant


def _magnitude(delta: float) -> float:
    return -1.0 if math.isnan(delta) else abs(delta)


def strongest_per_statistic(results: list[dict]) -> list[dict]:
    """Each statistic's strongest block (``results`` is sorted strongest first)."""
    best: dict[str, dict] = {}
    for result in results:
        best.setdefault(result["statistic"], result)
    return list(best.values())


def choose_attention_layer(results: list[dict], layers: list[int], wanted: int | None) -> int:
    """The block of the attention picture: the one asked for, or where the answer-to-prompt
    mass differs most (the strongest cell of any statistic if that one never varies)."""
    if wanted is not None:
        return wanted
    for result in results:
        if result["statistic"] == "answer_to_prompt_mass":
            return result["layer"]
    by_layer = [result["layer"] for result in results if result["layer"] is not None]
    return by_layer[0] if by_layer else layers[0]


def class_mean_maps(measurements: Measurements, layer: int) -> dict[str, np.ndarray]:
    """Mean attention map of each class at one block (empty bins left out of the mean)."""
    position = measurements.layers.index(layer)
    maps = measurements.maps[:, position]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan bin is meant to stay nan
        return {
            "correct": np.nanmean(maps[~measurements.is_hallucinated], axis=0),
            "hallucinated": np.nanmean(maps[measurements.is_hallucinated], axis=0),
        }
