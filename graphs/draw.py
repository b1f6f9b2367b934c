"""A picture of one layer's graph: an arc diagram in token order.

A force layout of a few dozen tokens with hundreds of attention edges is a hairball; with the
tokens left to right in reading order, every edge ``j → i`` is an arc from an earlier token to a
later one, its shade the attention weight (log scale, since the first token often takes most of
it), and prompt and answer tokens are told apart by colour. Drawn on a bare matplotlib
``Figure`` (Agg), so pyplot's global backend is never touched.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from common import save_figure
from graphs.build import edge_weights
from graphs.source import Source, layer_graph
from graphs.spec import GraphSpec

PROMPT_COLOUR = "#1f77b4"
ANSWER_COLOUR = "#d62728"
ARC_POINTS = 64


def _shown(token: str) -> str:
    """Whitespace made visible, so a newline or a lone space is still a readable label."""
    return token.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "␣") or "∅"


def _arcs(edge_index: np.ndarray) -> np.ndarray:
    """``[E, ARC_POINTS, 2]`` half-ellipses over the token axis, as tall as they are long."""
    source, target = edge_index
    theta = np.linspace(0, np.pi, ARC_POINTS)
    centre = (source + target)[:, None] / 2
    radius = np.abs(target - source)[:, None] / 2
    return np.stack([centre - radius * np.cos(theta), radius * np.sin(theta)], axis=-1)


def draw_graph(
    source: Source,
    question_id: str | None,
    spec: GraphSpec,
    out: str | Path,
) -> Path:
    """Save a PNG of block ``spec.block``'s graph of one trace (self-loops left out) and return
    its path."""
    inputs, data = layer_graph(source, question_id, dataclasses.replace(spec, self_loops=False))
    layer, threshold = spec.block, spec.threshold
    n = data.num_nodes
    tokens = inputs.tokens_decoded[len(inputs.tokens_decoded) - n :]
    weights = edge_weights(data).numpy()
    order = np.argsort(weights)  # strong edges drawn last, on top
    edge_index = data.edge_index.numpy()[:, order]
    weights = weights[order]
    colours = np.where(data.is_answer.numpy(), ANSWER_COLOUR, PROMPT_COLOUR)

    width = min(max(10.0, 0.2 * n), 60.0)
    fig = Figure(figsize=(width, 7.5), layout="constrained")
    ax = fig.add_subplot()
    strongest = float(weights.max()) if weights.size else 1.0
    arcs = LineCollection(
        _arcs(edge_index),
        cmap="Greys",
        norm=LogNorm(vmin=threshold, vmax=max(strongest, 2 * threshold)),
        linewidths=0.4 + 2.0 * weights,
        alpha=0.8,
    )
    arcs.set_array(weights)
    ax.add_collection(arcs)
    ax.scatter(np.arange(n), np.zeros(n), s=28, c=colours, zorder=3)
    ax.set_xticks(range(n), [_shown(token) for token in tokens], rotation=90, fontsize=8)
    for label, colour in zip(ax.get_xticklabels(), colours, strict=True):
        label.set_color(colour)
    ax.tick_params(axis="x", length=0)
    ax.set_yticks([])
    ax.spines[:].set_visible(False)
    ax.set_xlim(-1, n)
    ax.set_ylim(-0.5, max(n / 2, 1) + 0.5)
    aggregate = "max" if spec.head_mode == "max" else "mean"
    fig.colorbar(arcs, ax=ax, shrink=0.5, pad=0.01, label=f"attention weight (head {aggregate})")
    kinds = [(PROMPT_COLOUR, "prompt token"), (ANSWER_COLOUR, "answer token")]
    ax.legend(
        handles=[
            Line2D([], [], marker="o", ls="", color=colour, label=label)
            for colour, label in kinds
            if colour in colours
        ],
        loc="upper left",
    )
    verdict = {1: "hallucinated", 0: "correct"}.get(inputs.label, "unlabelled")
    wrap = max(int(width * 11), 80)
    ax.set_title(
        f"{inputs.question_id} · block {layer} · {verdict} · {n} tokens · {data.num_edges} "
        f"edges with attention ≥ {threshold}, self-loops left out\n"
        "an arc joins token j to a later token i that attends to it\n"
        + textwrap.shorten(f"Q: {inputs.question}", wrap)
        + "\n"
        + textwrap.shorten(f"A: {inputs.answer}", wrap),
        loc="left",
        fontsize=10,
    )
    return save_figure(fig, out, dpi=120)
