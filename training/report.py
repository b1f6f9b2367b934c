"""Reports: the JSON a result is quoted from, and the figures (ROC curve, AUROC per layer)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

from common import atomic_write_text, save_figure

REPORT = "report.json"
ROC_FIGURE = "roc_curve.png"


def _clean(value):
    """JSON has no NaN: undefined metrics (a single-class split) are written as ``null``."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def write_json(path: Path, payload: dict) -> Path:
    return atomic_write_text(path, json.dumps(_clean(payload), indent=2) + "\n")


def environment() -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": {
            name: version(name)
            for name in ("torch", "torch-geometric", "lightning", "torchmetrics")
        },
    }


def plot_roc(
    path: Path, curves: dict[str, dict], title: str, operating: dict | None = None
) -> Path:
    """One ROC curve per detector; ``curves[name] = {"fpr", "tpr", "auroc"}``; ``operating`` marks
    the validation-chosen threshold of a detector (``{"name", "fpr", "tpr", "threshold"}``)."""
    fig = Figure(figsize=(5.2, 5.0), dpi=120)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="chance (AUROC 0.5)")
    for name, curve in curves.items():
        auroc = curve["auroc"]
        label = f"{name} (AUROC {auroc:.3f})" if auroc is not None else f"{name} (AUROC n/a)"
        ax.step(curve["fpr"], curve["tpr"], where="post", lw=2, label=label)
    if operating is not None:
        ax.plot(
            operating["fpr"],
            operating["tpr"],
            "o",
            color="black",
            label=f"threshold {operating['threshold']:.2f} (chosen on val)",
        )
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="false positive rate (correct answers flagged)",
        ylabel="true positive rate (hallucinations caught)",
        title=title,
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    if len(curves) > 1:  # a long legend would hide the curves: put it under the axes
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), fontsize=8, frameon=False)
    else:
        ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path, bbox_inches="tight")


def plot_layer_sweep(
    path: Path,
    series: dict[str, dict[int, float | None]],
    title: str,
    intervals: dict[str, dict[int, list[float] | None]] | None = None,
) -> Path:
    """Test AUROC against layer, one line per detector (``series[name][layer] = auroc``), with a
    shaded 95% interval where ``intervals[name][layer] = [low, high]`` is given."""
    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    ax = fig.subplots()
    all_layers = sorted({layer for points in series.values() for layer in points})
    for name, points in series.items():
        layers = sorted(points)
        values = [math.nan if points[layer] is None else points[layer] for layer in layers]
        (line,) = ax.plot(layers, values, marker="o", lw=2, label=name)
        bands = (intervals or {}).get(name)
        if bands:
            low = [bands[layer][0] if bands.get(layer) else math.nan for layer in layers]
            high = [bands[layer][1] if bands.get(layer) else math.nan for layer in layers]
            ax.fill_between(
                layers, low, high, color=line.get_color(), alpha=0.15, label=f"{name}: 95% CI"
            )
    ax.axhline(0.5, ls="--", lw=1, color="0.6", label="chance")
    ax.set(xlabel="layer (transformer block)", ylabel="test AUROC", ylim=(0.0, 1.0), title=title)
    ax.set_xticks(all_layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)
