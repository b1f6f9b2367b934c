"""The pictures of ``python -m graphs compare``: effect size by block, the distributions of the
strongest statistics, and where each class's answer tokens attend.

Drawn on bare matplotlib ``Figure`` objects (Agg, pyplot's global state untouched, as in
:mod:`graphs.draw`) and written atomically: a reader never sees half a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LogNorm, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from common import save_figure
from graphs.statistics import CONTROLS, STATISTICS

if TYPE_CHECKING:
    from graphs.measure import Measurements

DPI = 110
CLASS_COLOURS = {"correct": "#1f77b4", "hallucinated": "#d62728"}


def plot_effects_by_layer(results: list[dict], layers: list[int], output: Path) -> Path:
    """Heatmap statistic × block of Cliff's delta; outlined, bold cells are significant after
    the Benjamini–Hochberg correction."""
    statistics = [name for name in STATISTICS if any(r["statistic"] == name for r in results)]
    delta = np.full((len(statistics), len(layers)), np.nan)
    significant = np.zeros_like(delta, dtype=bool)
    for r in results:
        row = statistics.index(r["statistic"])
        columns = slice(None) if r["layer"] is None else layers.index(r["layer"])  # a control
        delta[row, columns], significant[row, columns] = r["cliffs_delta"], r["significant"]
    limit = max(0.1, float(np.nanmax(np.abs(delta))) if np.isfinite(delta).any() else 0.1)

    fig = Figure(figsize=(1.6 + 0.62 * len(layers) + 2.6, 0.9 + 0.42 * len(statistics)))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    image = ax.imshow(delta, cmap="RdBu_r", norm=TwoSlopeNorm(0, -limit, limit), aspect="auto")
    for (row, column), value in np.ndenumerate(delta):
        if np.isnan(value):
            continue
        strong = significant[row, column]
        ax.text(
            column,
            row,
            f"{value:+.2f}",
            ha="center",
            va="center",
            fontsize=7.5,
            fontweight="bold" if strong else "normal",
            color="white" if abs(value) > 0.6 * limit else "black",
        )
        if strong:
            ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, lw=1.6, ec="black"))
    ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_yticks(
        range(len(statistics)),
        [f"{name} (control)" if name in CONTROLS else name for name in statistics],
    )
    ax.set_xlabel("block")
    ax.set_title(
        "Cliff's δ, hallucinated vs correct (red: larger when hallucinated)\n"
        "outlined, bold: significant after Benjamini–Hochberg",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, shrink=0.8, label="Cliff's δ")
    return save_figure(fig, output / "effects_by_layer.png", dpi=DPI)


def plot_distributions(measurements: Measurements, chosen: list[dict], output: Path) -> Path:
    """Violins (with medians and quartiles) of each class for the chosen results (statistics,
    each at its strongest block)."""
    columns = min(3, len(chosen)) or 1
    rows = max(1, -(-len(chosen) // columns))
    fig = Figure(figsize=(4.2 * columns, 3.4 * rows))
    fig.set_layout_engine("constrained")
    names = list(STATISTICS)
    for number, result in enumerate(chosen):
        ax = fig.add_subplot(rows, columns, number + 1)
        layer = result["layer"]
        position = 0 if layer is None else measurements.layers.index(layer)  # a control: any
        values = measurements.values[:, position, names.index(result["statistic"])]
        groups = {
            "correct": values[~measurements.is_hallucinated],
            "hallucinated": values[measurements.is_hallucinated],
        }
        groups = {label: group[~np.isnan(group)] for label, group in groups.items()}
        parts = ax.violinplot(list(groups.values()), showmedians=True, showextrema=False)
        for body, label in zip(parts["bodies"], groups, strict=True):
            body.set_facecolor(CLASS_COLOURS[label])
            body.set_alpha(0.45)
        parts["cmedians"].set_color("black")
        ax.boxplot(
            list(groups.values()),
            widths=0.12,
            showfliers=False,
            medianprops={"color": "black"},
        )
        ax.set_xticks([1, 2], [f"{label}\n(n={len(group)})" for label, group in groups.items()])
        low_high = " – ".join(f"{v:+.2f}" for v in result["ci95"]) if result["ci95"] else "–"
        ax.set_title(
            f"{result['statistic']} · {'any block' if layer is None else f'block {layer}'}\n"
            f"δ = {result['cliffs_delta']:+.2f} [{low_high}], q = {result['q_value']:.2g}",
            fontsize=9,
        )
    fig.suptitle("Strongest statistics, each at its strongest block", fontsize=11)
    return save_figure(fig, output / "distributions.png", dpi=DPI)


def _column_edges(ax, prompt_bins: int, answer_bins: int) -> None:
    """Separators and labels of the attention map's three column groups."""
    for edge in (0.5, prompt_bins + 0.5):
        ax.axvline(edge, color="grey", lw=0.8)
    ax.set_xticks(
        [0, (1 + prompt_bins) / 2, prompt_bins + (1 + answer_bins) / 2],
        ["1st\ntoken", "prompt: start → end", "answer:\nstart → end"],
        fontsize=8,
    )


def plot_attention_by_class(maps: dict[str, np.ndarray], layer: int, output: Path) -> Path:
    """Where the answer tokens attend, each class side by side (rows: answer tokens by relative
    position; columns: the first token, the prompt and the answer by relative position), and the
    mass per column of each class over all answer tokens below, with their difference.
    A map is ``[answer bins, 1 + prompt bins + answer bins]``."""
    answer_bins, width = next(iter(maps.values())).shape
    prompt_bins = width - 1 - answer_bins
    fig = Figure(figsize=(13, 8.2))
    fig.set_layout_engine("constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
    finite = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in maps.values()])
    norm = LogNorm(vmin=max(float(finite.min()), 1e-4), vmax=float(finite.max()))
    for column, (label, matrix) in enumerate(maps.items()):
        ax = fig.add_subplot(grid[0, column])
        image = ax.imshow(
            np.where(matrix > 0, matrix, np.nan), norm=norm, cmap="viridis", aspect="auto"
        )
        _column_edges(ax, prompt_bins, answer_bins)
        ax.set_yticks([0, answer_bins - 1], ["answer\nstart", "answer\nend"], fontsize=8)
        ax.set_title(
            f"{label} answers: mean attention of answer tokens",
            fontsize=10,
            color=CLASS_COLOURS[label],
        )
    fig.colorbar(image, ax=list(fig.axes), shrink=0.9, label="attention mass (head mean)")

    ax = fig.add_subplot(grid[1, :])
    positions = np.arange(width)
    profiles = {label: np.nanmean(matrix, axis=0) for label, matrix in maps.items()}
    for label, profile in profiles.items():
        ax.plot(positions, profile, marker="o", ms=3.5, color=CLASS_COLOURS[label], label=label)
    ax.set_yscale("log")
    ax.set_ylabel("attention mass per answer token")
    _column_edges(ax, prompt_bins, answer_bins)
    difference = profiles["hallucinated"] - profiles["correct"]
    twin = ax.twinx()
    twin.bar(
        positions, difference, color="grey", alpha=0.35, width=0.8, label="hallucinated − correct"
    )
    twin.axhline(0, color="grey", lw=0.6)
    twin.set_ylabel("hallucinated − correct (bars, linear)")
    handles = ax.get_legend_handles_labels()
    bars = twin.get_legend_handles_labels()
    ax.legend(handles[0] + bars[0], handles[1] + bars[1], loc="upper center", fontsize=9)
    ax.set_title(
        "where the answer tokens' attention goes, by relative position (the mean of the rows "
        "above)",
        fontsize=10,
    )
    fig.suptitle(f"Block {layer}: class-mean attention of the answer tokens", fontsize=12)
    return save_figure(fig, output / "attention_by_class.png", dpi=DPI)
