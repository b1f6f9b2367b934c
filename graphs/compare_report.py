"""The report of ``python -m graphs compare``: ``compare.md`` (strongest differences first),
``graph_statistics.csv`` (every graph's statistics) and the JSON-safe record of
``compare.json``, from what :mod:`graphs.measure` measured."""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from graphs.measure import Measurements, strongest_per_statistic
from graphs.statistics import STATISTICS

TABLE_ROWS = 30  # cells listed in compare.md after the per-statistic summary
VALUES_FILE = "graph_statistics.csv"


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


def jsonable(value):
    """nan and inf become null (JSON has neither); numpy values become Python ones."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
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
