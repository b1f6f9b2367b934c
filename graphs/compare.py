"""``python -m graphs compare``: where, by layer and by statistic, the graphs of hallucinated
answers differ from those of correct ones (the seed's third analysis).

Every labelled trace with answer tokens is turned into one graph per compared block (the options
of ``graphs build``); each graph gives the statistics of :mod:`graphs.statistics`, and each
block the class-mean attention of the answer tokens over the sequence (:func:`attention_map`).
Then every (block, statistic) cell is compared with :mod:`graphs.effects` and written out:
``compare.json`` (every number), ``compare.md`` (strongest differences first), the pictures of
:mod:`graphs.compare_plots` and every graph's statistics in ``graph_statistics.csv``.

This module runs it: the measurement is :mod:`graphs.measure`, the written report
:mod:`graphs.compare_report`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict
from pathlib import Path

from common import UserError, atomic_write_text
from extraction.store import TraceStore
from graphs.compare_report import VALUES_FILE, jsonable, report_markdown, values_csv
from graphs.config import GraphCompareConfig
from graphs.measure import (
    ANSWER_BINS,
    PROMPT_BINS,
    choose_attention_layer,
    class_mean_maps,
    compare,
    measure,
    strongest_per_statistic,
)
from graphs.statistics import STATISTICS, describe

log = logging.getLogger(__name__)


def check_config(cfg: GraphCompareConfig, store: TraceStore) -> list[int]:
    """Raise :class:`UserError` on a setting that cannot work; the blocks to compare."""
    spec, available = cfg.graph, store.stored_blocks
    if spec.multi_block and spec.combine == "union":
        raise UserError("compare measures each block's own graph; use --graph.combine stack")
    if spec.block is None and spec.blocks is None:
        spec = dataclasses.replace(spec, blocks="all")
    if not available:
        raise UserError("no blocks to compare: the store holds no attention")
    layers = spec.resolve(available, store.min_attention).chosen_blocks
    if len(set(layers)) != len(layers):
        raise UserError(f"--graph.blocks lists a block twice: {layers}")
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
    atomic_write_text(output / "compare.json", json.dumps(jsonable(record), indent=1))
    atomic_write_text(output / VALUES_FILE, values_csv(measurements))
    markdown = report_markdown(summary, results, record["pictures"])
    atomic_write_text(output / "compare.md", markdown)
    log.info("compared %d traces at %d blocks", summary["n_traces"], len(layers))
    return output / "compare.md"
