"""The benchmark's evidence outputs: the learning curve (``learning_curve.json``, ``.md``,
``.png``: test AUROC against train size, ±1 sd over split seeds) and the transfer table and
heatmap (``transfer.png``): each detector's test AUROC on this store beside its AUROC on every
``--transfer_traces`` store."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from common import atomic_write_text, save_figure
from training.benchmark_stats import mean_sd
from training.report import write_json


def _fmt(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return "n/a" if math.isnan(mean) else f"{mean:.3f} ± {sd:.3f}"


def _store_title(context: dict) -> str:
    return f"{context['model']}, {Path(context['store']).name}"


def write_learning_curve(
    output: Path,
    results: dict[int, dict[str, list[dict]]],
    missing: dict[int, dict[str, list[int]]],
    families: dict[str, str],
    context: dict,
    full: int | None = None,
) -> None:
    """``learning_curve.json`` (``{detector: {size: [auroc per seed]}}``), ``.md`` and ``.png``
    from the per-size results (a detector with seeds not computed is left out of that size);
    ``full`` is the size of the whole train split."""
    curves: dict[str, dict[int, list[float]]] = {}
    for size, by_detector in results.items():
        for name, runs in by_detector.items():
            if name not in missing[size]:
                curves.setdefault(name, {})[size] = [run["auroc"] for run in runs]
    write_json(
        output / "learning_curve.json",
        {
            name: {str(size): values for size, values in sorted(c.items())}
            for name, c in curves.items()
        },
    )
    sizes = sorted(results)
    lines = [
        f"# Learning curve: {_store_title(context)}",
        "",
        "Test AUROC (mean ± sd over split seeds) of each detector trained on the traces of N "
        "train questions: seeded subsets of each seed's train split, each inside the next; "
        "val and test are the whole splits"
        + (f"; N = {full} is the whole train split." if full in sizes else "."),
        "",
        "| detector | family | "
        + " | ".join(f"N = {size}" + " (all)" * (size == full) for size in sizes)
        + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    ranked = sorted(curves, key=lambda n: -np.nan_to_num(mean_sd(curves[n][max(curves[n])])[0]))
    for name in ranked:
        cells = [_fmt(curves[name][size]) if size in curves[name] else "–" for size in sizes]
        lines.append(f"| {name} | {families[name]} | {' | '.join(cells)} |")
    atomic_write_text(output / "learning_curve.md", "\n".join(lines) + "\n")
    _plot_curves(output / "learning_curve.png", curves, families, context)


def _plot_curves(path: Path, curves: dict, families: dict, context: dict) -> None:
    fig = Figure(figsize=(7.5, 4.8), dpi=120)
    ax = fig.subplots()
    palette = [*colormaps["tab10"].colors, *colormaps["Dark2"].colors]
    for number, (name, curve) in enumerate(curves.items()):
        sizes = sorted(curve)
        stats = np.array([mean_sd(curve[size]) for size in sizes])
        style = "--" if families[name] == "graph" else "-"
        (line,) = ax.plot(sizes, stats[:, 0], style, marker="o", ms=3, label=name,
                          color=palette[number % len(palette)])  # fmt: skip
        ax.fill_between(sizes, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 1],
                        color=line.get_color(), alpha=0.15, lw=0)  # fmt: skip
    ax.axhline(0.5, ls=":", lw=1, color="0.5")
    ax.set_xscale("log")
    all_sizes = sorted({size for curve in curves.values() for size in curve})
    ax.set_xticks(all_sizes, [str(size) for size in all_sizes])
    ax.minorticks_off()
    n_seeds = max((len(v) for c in curves.values() for v in c.values()), default=0)
    ax.set(
        xlabel="train questions (log scale)",
        ylabel=f"test AUROC (mean ± sd, {n_seeds} seeds)",
        title=f"{_store_title(context)}: AUROC vs train size",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="dashed: graph",
              title_fontsize=7)  # fmt: skip
    fig.tight_layout()
    save_figure(fig, path)


def transfer_summary(runs: list[dict]) -> dict:
    """``{store: {auroc: [per seed], auroc_mean, auroc_sd, n, n_hallucinated}}`` of one
    detector's seeds (empty without transfer)."""
    out: dict = {}
    for run in runs:
        for name, result in (run.get("transfer") or {}).items():
            if result is None:
                continue
            entry = out.setdefault(name, {"auroc": [], "n": result["n"]})
            entry["auroc"].append(result["auroc"])
            entry["n_hallucinated"] = result["n_hallucinated"]
    for entry in out.values():
        entry["auroc_mean"], entry["auroc_sd"] = mean_sd(entry["auroc"])
    return out


def _in_store(context: dict) -> str:
    held_out = context.get("split_by") == "relation"
    return "held-out relations (test)" if held_out else "this store (test)"


def transfer_markdown(summaries: dict, context: dict) -> list[str]:
    """The transfer table's lines (none without transfer stores)."""
    targets = list(context.get("transfer") or {})
    if not targets:
        return []
    first = next((s["transfer"] for s in summaries.values() if s.get("transfer")), {})
    heads = [
        f"{t} ({first[t]['n']} answers, {first[t]['n_hallucinated']} hallucinated)"
        if t in first
        else t
        for t in targets
    ]
    lines = [
        "",
        "## Transfer",
        "",
        f"Trained on {Path(context['store']).name}'s train split, test AUROC (mean ± sd over "
        "seeds) on its own test split and on the whole of each other store of the same model.",
        "",
        f"| detector | {_in_store(context)} | " + " | ".join(heads) + " |",
        "|---|---|" + "---|" * len(targets),
    ]
    for name, s in sorted(summaries.items(), key=lambda kv: -np.nan_to_num(kv[1]["auroc_mean"])):
        cells = [_fmt(s["transfer"][t]["auroc"]) if t in s["transfer"] else "n/a" for t in targets]
        lines.append(f"| {name} | {_fmt(s['auroc'])} | {' | '.join(cells)} |")
    return lines


def plot_transfer(path: Path, summaries: dict, context: dict) -> None:
    """Heatmap: detectors (rows) by where they are scored (columns), mean test AUROC."""
    targets = list(context["transfer"])
    names = sorted(summaries, key=lambda n: -np.nan_to_num(summaries[n]["auroc_mean"]))
    columns = [_in_store(context), *targets]
    values = np.array(
        [
            [summaries[n]["auroc_mean"]]
            + [summaries[n]["transfer"].get(t, {}).get("auroc_mean", math.nan) for t in targets]
            for n in names
        ],
        dtype=float,
    )
    fig = Figure(figsize=(2.0 + 1.6 * len(columns), 0.35 * len(names) + 1.8), dpi=120)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, "n/a" if math.isnan(value) else f"{value:.2f}", ha="center",
                va="center", fontsize=8)  # fmt: skip
    ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(f"Transfer from {Path(context['store']).name} ({context['model']})", fontsize=10)
    fig.colorbar(image, ax=ax, label="test AUROC (mean over seeds)")
    fig.tight_layout()
    save_figure(fig, path)
