"""``python -m graphs compare``: where, by layer and by statistic, the graphs of hallucinated
answers differ from those of correct ones (the seed's third analysis).

Every labelled trace with answer tokens is turned into one graph per compared block (the options
of ``graphs build``); each graph gives the statistics of :mod:`graphs.statistics`, and each
block the class-mean attention of the answer tokens over the sequence (:func:`attention_map`).
Then every (block, statistic) cell is compared with :mod:`graphs.effects` and written out:
``compare.json`` (every number), ``compare.md`` (strongest differences first), the pictures of
:mod:`graphs.compare_plots` and every graph's statistics in ``graph_statistics.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import UserError, atomic_write_text
from extraction.store import TraceStore
from graphs.build import traces_to_graphs
from graphs.config import GraphCompareConfig
from graphs.effects import benjamini_hochberg, compare_classes, unit_resample_weights
from graphs.spec import GraphSpec
from graphs.statistics import CONTROLS, STATISTICS, describe, graph_statistics

log = logging.getLogger(__name__)

CHUNK_TRACES = 32  # traces whose graphs of one block are built together
PROMPT_BINS = 20  # columns of the attention map over the prompt after its first token
ANSWER_BINS = 5  # rows (answer tokens) and answer columns of the attention map
MAP_COLUMNS = 1 + PROMPT_BINS + ANSWER_BINS  # first token | prompt bins | answer bins
TABLE_ROWS = 30  # cells listed in compare.md after the per-statistic summary
VALUES_FILE = "graph_statistics.csv"


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


def values_csv(measurements: Measurements) -> str:
    """Every statistic of every graph, one row per (trace, block): for analyses of your own."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["question_id", "question_unit", "label", "layer", *STATISTICS])
    for trace, question_id in enumerate(measurements.question_ids):
        for position, layer in enumerate(measurements.layers):
            writer.writerow(
                [
                    question_id,
                    measurements.units[trace],
                    int(measurements.is_hallucinated[trace]),
                    layer,
                    *(f"{value:.6g}" for value in measurements.values[trace, position]),
                ]
            )
    return buffer.getvalue()


def constant_statistics(measurements: Measurements) -> list[str]:
    """Statistics with one value (or none) over every graph: nothing to compare."""
    constant = []
    for index, name in enumerate(STATISTICS):
        finite = measurements.values[..., index]
        finite = finite[~np.isnan(finite)]
        if finite.size == 0 or finite.min() == finite.max():
            constant.append(name)
    return constant


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


def _jsonable(value):
    """nan and inf become null (JSON has neither); numpy values become Python ones."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 10**-digits):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def _significant(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3g}"


def _signed(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:+.2f}"


def _interval(result: dict) -> str:
    return "–" if not result["ci95"] else " – ".join(_signed(v) for v in result["ci95"])


def _table(results: list[dict]) -> list[str]:
    lines = [
        "| statistic | block | median hallucinated | median correct | Cliff's δ | 95% CI | "
        "AUROC | p | q (BH) | n h / c |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        mark = " **\\***" if r["significant"] else ""
        block = "all" if r["layer"] is None else r["layer"]
        lines.append(
            f"| {r['statistic']} | {block} | {_number(r['median_hallucinated'])} | "
            f"{_number(r['median_correct'])} | {_signed(r['cliffs_delta'])}{mark} | "
            f"{_interval(r)} | {_number(r['auroc'], 2)} | {_significant(r['p_value'])} | "
            f"{_significant(r['q_value'])} | {r['n_hallucinated']} / {r['n_correct']} |"
        )
    return lines


def report_markdown(summary: dict, results: list[dict], pictures: dict[str, str]) -> str:
    """``compare.md``: the setting, each statistic at its strongest block, then every cell."""
    n_h, n_c = summary["n_hallucinated"], summary["n_correct"]
    options = ", ".join(f"{key}={value}" for key, value in summary["graph_options"].items())
    lines = [
        f"# Hallucinated vs correct graphs: {summary['traces']}",
        "",
        f"{n_h + n_c} traces ({n_h} hallucinated, {n_c} correct) of {summary['n_units']} "
        f"questions of {summary['dataset']}; model {summary['model']}; blocks "
        f"{summary['layers']}; graphs: {options}. "
        f"Skipped: {summary['skipped']['unlabelled']} unlabelled, {summary['skipped']['empty']} "
        "without answer tokens.",
        "",
        "Cliff's δ = P(hallucinated > correct) − P(hallucinated < correct): positive means the "
        "statistic is larger for hallucinated answers. AUROC = (δ + 1) / 2 is the statistic "
        f"alone as a detector. 95% CI: {summary['method']['bootstrap']} bootstrap resamples of "
        "questions. p: two-sided Mann–Whitney U; q: Benjamini–Hochberg over all "
        f"{len(results)} cells; **\\*** marks q < {summary['method']['fdr']}.",
        "",
        "## Each statistic at its strongest block",
        "",
        *_table(strongest_per_statistic(results)),
        "",
    ]
    if summary["approximate"]:
        lines += [f"Approximate: {summary['approximate']}.", ""]
    if summary["constant"]:
        lines += [
            "Constant over every graph (not compared): " + ", ".join(summary["constant"]) + ".",
            "",
        ]
    lines += [
        f"## The {min(TABLE_ROWS, len(results))} strongest cells (all in compare.json)",
        "",
        *_table(results[:TABLE_ROWS]),
        "",
        "## Pictures",
        "",
        *[f"![{name}]({file})" for name, file in pictures.items()],
        "",
        "## Statistics",
        "",
        *[f"- `{name}`: {text}" for name, text in summary["statistics"].items()],
        "",
    ]
    return "\n".join(lines)


def check_config(cfg: GraphCompareConfig, store: TraceStore) -> list[int]:
    """Raise :class:`UserError` on a setting that cannot work; the blocks to compare."""
    spec, available = cfg.graph, store.stored_blocks
    if spec.multi_layer and spec.combine == "union":
        raise UserError("compare measures each block's own graph; use --graph.combine stack")
    if spec.layer is None and spec.layers is None:
        spec = dataclasses.replace(spec, layers="all")
    if not available:
        raise UserError("no blocks to compare: the store holds no attention")
    layers = spec.resolve(available, store.min_attention).blocks
    if len(set(layers)) != len(layers):
        raise UserError(f"--graph.layers lists a block twice: {layers}")
    if cfg.attention_layer is not None and cfg.attention_layer not in layers:
        raise UserError(f"--attention_layer {cfg.attention_layer} is not among the blocks {layers}")
    if cfg.bootstrap < 1:
        raise UserError(f"--bootstrap must be a positive number of resamples, got {cfg.bootstrap}")
    if not 0 < cfg.fdr < 1:
        raise UserError(f"--fdr must be in (0, 1), got {cfg.fdr}")
    if cfg.top < 1:
        raise UserError(f"--top must be at least 1, got {cfg.top}")
    output = Path(cfg.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; give a folder")
    return layers


def sparse_caveat(store: TraceStore) -> str | None:
    """What a sparse store makes approximate here (None for a dense one), logged: the attention
    maps, which average every weight; the graph statistics are exact (docs/GRAPHS.md)."""
    if store.min_attention is None:
        return None
    caveat = (
        f"the attention maps miss the weights below the store's min_attention "
        f"{store.min_attention} (not stored); the graph statistics are exact"
    )
    log.warning("sparse store: %s", caveat)
    return caveat


def run_compare(cfg: GraphCompareConfig, progress: bool = True) -> Path:
    """Measure, compare, write every output under ``cfg.output``; returns ``compare.md``."""
    from graphs.compare_plots import (
        plot_attention_by_class,
        plot_distributions,
        plot_effects_by_layer,
    )

    store = TraceStore(cfg.traces)
    layers = check_config(cfg, store)
    labels = [store.rows[qid].label for qid in store.question_ids]
    if 0 not in labels or 1 not in labels:
        raise UserError(
            f"{cfg.traces} needs both hallucinated and correct traces to compare; it has "
            f"{labels.count(1)} hallucinated and {labels.count(0)} correct (relabel it first)"
        )
    measurements = measure(store, layers, cfg.graph, progress)
    results, constant = compare(measurements, cfg.bootstrap, cfg.seed, cfg.fdr)
    attention_layer = choose_attention_layer(results, layers, cfg.attention_layer)
    maps = class_mean_maps(measurements, attention_layer)

    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    pictures = {
        "effect size by block": plot_effects_by_layer(results, layers, output),
        "distributions": plot_distributions(
            measurements, strongest_per_statistic(results)[: cfg.top], output
        ),
        "attention by class": plot_attention_by_class(maps, attention_layer, output),
    }
    summary = {
        "traces": str(store.root),
        "model": store.manifest.settings.model,
        "dataset": store.manifest.settings.dataset,
        "layers": layers,
        "graph_options": cfg.graph.as_dict(),
        "n_traces": len(measurements.question_ids),
        "n_hallucinated": int(measurements.is_hallucinated.sum()),
        "n_correct": int((~measurements.is_hallucinated).sum()),
        "n_units": len(set(measurements.units)),
        "skipped": measurements.skipped,
        "method": {
            "effect_size": "Cliff's delta (hallucinated vs correct)",
            "interval": "percentile bootstrap over questions",
            "bootstrap": cfg.bootstrap,
            "seed": cfg.seed,
            "test": "two-sided Mann-Whitney U",
            "correction": "Benjamini-Hochberg",
            "fdr": cfg.fdr,
        },
        "statistics": {name: describe(name) for name in STATISTICS},
        "constant": constant,
        "approximate": sparse_caveat(store),
    }
    record = {
        **summary,
        "results": results,
        "attention_map": {
            "layer": attention_layer,
            "rows": f"answer tokens in {ANSWER_BINS} bins of relative answer position",
            "columns": (
                f"first token, {PROMPT_BINS} bins of relative prompt position, "
                f"{ANSWER_BINS} bins of relative answer position"
            ),
            **maps,
        },
        "pictures": {name: path.name for name, path in pictures.items()},
        "config": asdict(cfg),
    }
    atomic_write_text(output / "compare.json", json.dumps(_jsonable(record), indent=1))
    atomic_write_text(output / VALUES_FILE, values_csv(measurements))
    markdown = report_markdown(summary, results, record["pictures"])
    atomic_write_text(output / "compare.md", markdown)
    log.info("compared %d traces at %d blocks", summary["n_traces"], len(layers))
    return output / "compare.md"
