"""The benchmark's outputs: ``benchmark.json``, ``benchmark.md`` (best first) and
``benchmark.png`` (mean AUROC points with seed-to-seed sd whiskers)."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from common import atomic_write_text, save_figure
from training.benchmark_curves import plot_transfer, transfer_markdown, transfer_summary
from training.benchmark_stats import mean_sd, paired_bootstrap
from training.report import environment, write_json

METRICS = ("auroc", "auprc", "auprc_correct")


def summarise(runs: list[dict]) -> dict:
    """One detector's per-seed results → lists, means, sds and test-set sizes."""
    summary: dict = {"seeds": [run["seed"] for run in runs]}
    for metric in METRICS:
        values = [run[metric] for run in runs]
        summary[metric] = values
        summary[f"{metric}_mean"], summary[f"{metric}_sd"] = mean_sd(values)
    summary["n_test"] = [len(run["test_labels"]) for run in runs]
    summary["n_hallucinated"] = [int(sum(run["test_labels"])) for run in runs]
    summary["seconds"] = [run["seconds"] for run in runs]
    summary["settings"] = [run["settings"] for run in runs]
    summary["transfer"] = transfer_summary(runs)
    return summary


def _describe(settings: dict) -> str:
    """What train/val chose in one seed, in a few words."""
    parts = []
    if str(settings.get("chosen", "")).startswith("layer"):
        parts.append(settings["chosen"])
    if "sign" in settings:
        parts.append("higher = hallucinated" if settings["sign"] > 0 else "lower = hallucinated")
    if "classifier" in settings:
        parts.append(settings["classifier"])
    return ", ".join(parts)


def _choices(settings: list[dict]) -> str:
    """The most common choice over seeds (graph detectors: the epochs trained)."""
    epochs = [s["epochs"] for s in settings if "epochs" in s]
    if epochs:
        return f"{min(epochs)}–{max(epochs)} epochs (early stopping on val AUROC)"
    choice, count = Counter(_describe(s) for s in settings).most_common(1)[0]
    return f"{choice} ({count}/{len(settings)} seeds)" if choice else ""


def _reference(summaries: dict, families: dict) -> str | None:
    """The best trace baseline (not a graph detector) by mean AUROC."""
    candidates = [
        name
        for name, s in summaries.items()
        if families[name] != "graph" and not math.isnan(s["auroc_mean"])
    ]
    return max(candidates, key=lambda name: summaries[name]["auroc_mean"], default=None)


def _fmt(mean: float, sd: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {sd:.3f}"


def markdown(summaries: dict, skipped: dict, families: dict, context: dict) -> str:
    reference = context["reference"]
    n_test, n_hall = context["n_test"], context["n_hallucinated"]
    lines = [
        f"# Detector benchmark: {context['model']} on `{context['store']}`",
        "",
        f"{context['n_traces']} traces; {len(context['seeds'])} split seeds "
        f"(test: {n_test} answers, {n_hall} hallucinated); labels: "
        f"{context['label_methods']['summary']}; "
        f"manifest sha256 {context['manifest_sha256'][:12]}.",
        *([f"{context['generations']}."] if context.get("generations") else []),
        *(
            [
                "Split by relation: whole relations held out (train on some, validate and test on "
                "others)."
            ]
            if context.get("split_by") == "relation"
            else []
        ),
        f"Δ AUROC: paired bootstrap (95%) of the difference to the best trace baseline, "
        f"**{reference}**, on the same test questions, averaged over seeds."
        if reference is not None
        else "Δ AUROC: n/a (no trace detector in this run to compare against).",
        "",
        "| # | detector | family | AUROC | AUPRC (hallucinated) | AUPRC (correct) "
        "| Δ AUROC vs best baseline [95% CI] | chosen on train/val | s/seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(summaries, key=lambda name: -np.nan_to_num(summaries[name]["auroc_mean"]))
    for rank, name in enumerate(ranked, 1):
        s = summaries[name]
        delta = s.get("vs_reference")
        if name == reference:
            delta_text = "reference"
        elif delta is None:
            delta_text = "n/a"
        else:
            delta_text = f"{delta['difference']:+.3f} [{delta['low']:+.3f}, {delta['high']:+.3f}]"
        cells = [_fmt(s[f"{m}_mean"], s[f"{m}_sd"]) for m in METRICS]
        seconds = f"{np.mean(s['seconds']):.1f}"
        choice = _choices(s["settings"])
        lines.append(
            f"| {rank} | {name} | {families[name]} | {' | '.join(cells)} | {delta_text} "
            f"| {choice} | {seconds} |"
        )
    for name, reason in skipped.items():
        lines.append(f"| – | {name} | {families[name]} | skipped: {reason} | | | | | |")
    if context.get("approximate"):
        lines += [
            "",
            "Approximate on this sparse store (attention below its min_attention not kept):",
        ]
        lines += [f"- {name}: {caveat}" for name, caveat in context["approximate"].items()]
    lines += transfer_markdown(summaries, context)
    return "\n".join(lines) + "\n"


def auroc_span(means: list[float], sds: list[float], pad: float = 0.03) -> tuple[float, float]:
    """The x range of the AUROC plot: every mean ± sd and the 0.5 reference, padded, in [0, 1]
    (a 0-1 axis squeezes the range that matters into a fifth of the plot)."""
    values = np.array(means, dtype=float)
    spread = np.nan_to_num(np.array(sds, dtype=float))
    low = np.nanmin(np.append(values - spread, 0.5))
    high = np.nanmax(np.append(values + spread, 0.5))
    return max(0.0, float(low) - pad), min(1.0, float(high) + pad)


def plot(path: Path, summaries: dict, title: str) -> None:
    """One point per detector (mean test AUROC, ± sd bars), a 0.5 chance line, the axis on the
    data; the title is wrapped to the canvas."""
    names = sorted(summaries, key=lambda n: np.nan_to_num(summaries[n]["auroc_mean"]))
    means = [summaries[n]["auroc_mean"] for n in names]
    sds = [summaries[n]["auroc_sd"] for n in names]
    fig = Figure(figsize=(7.0, 0.32 * len(names) + 1.6), dpi=120)
    ax = fig.subplots()
    colors = {"graph": "tab:orange", "trace": "tab:blue"}
    for row, (name, mean, sd) in enumerate(zip(names, means, sds, strict=True)):
        color = colors["graph"] if summaries[name]["family"] == "graph" else colors["trace"]
        ax.errorbar(mean, row, xerr=np.nan_to_num(sd), fmt="o", color=color, capsize=3, ms=5)
    ax.set_yticks(range(len(names)), names)
    chance = ax.axvline(0.5, ls="--", lw=1, color="0.5", label="chance (0.5)")
    legend = [chance] + [
        Line2D([], [], color=colors[family], marker="o", ls="", label=f"{family} detectors")
        for family in ("graph", "trace")
    ]
    ax.set(xlim=auroc_span(means, sds), xlabel="test AUROC (mean ± sd over split seeds)")
    ax.set_title(textwrap.fill(title, 60), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=legend, loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_outputs(
    output: Path,
    results: dict[str, list[dict]],
    skipped: dict[str, str],
    families: dict[str, str],
    methods: dict[str, str],
    context: dict,
    resamples: int,
) -> Path:
    """Summaries, bootstrap against the best trace baseline, and the three files; returns the
    markdown's path."""
    summaries = {
        name: {**summarise(runs), "family": families[name], "method": methods[name]}
        for name, runs in results.items()
    }
    reference = _reference(summaries, families)
    for name, runs in results.items():
        if reference is None or name == reference:
            continue
        ref_runs = {run["seed"]: run for run in results[reference]}
        paired = [(run, ref_runs[run["seed"]]) for run in runs if run["seed"] in ref_runs]
        summaries[name]["vs_reference"] = paired_bootstrap(
            [np.array(run["scores"]) for run, _ in paired],
            [np.array(ref["scores"]) for _, ref in paired],
            [np.array(run["test_labels"]) for run, _ in paired],
            resamples=resamples,
        )
    first = next(iter(results.values()))
    context = {
        **context,
        "reference": reference,
        "seeds": [run["seed"] for run in first],
        "n_test": first[0]["test_labels"].__len__(),
        "n_hallucinated": int(sum(first[0]["test_labels"])),
    }
    write_json(
        output / "benchmark.json",
        {
            **context,
            "detectors": summaries,
            "skipped": {
                name: {"family": families[name], "reason": reason}
                for name, reason in skipped.items()
            },
            **environment(),
        },
    )
    path = output / "benchmark.md"
    atomic_write_text(path, markdown(summaries, skipped, families, context))
    plot(
        output / "benchmark.png",
        summaries,
        f"{context['model']}, {Path(context['store']).name}: test AUROC over "
        f"{len(context['seeds'])} split seeds",
    )
    if context.get("transfer"):
        plot_transfer(output / "transfer.png", summaries, context)
    return path
