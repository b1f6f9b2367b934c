"""Settings of ``python -m graphs build``: every field is a flag (``top_k`` ↔ ``--top-k``) and a
key of the YAML given to ``--config`` (see ``configs/graphs/default.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GraphBuildConfig:
    """Build the graph dataset of a trace store (one graph per trace, cached under root).

    Args:
        traces: Trace store directory written by ``python -m extraction``.
        root: Dataset folder: processed graphs and ``splits.json`` go here.
        layer: The block whose graph to build (attention of block l, hidden state l + 1).
        layers: Several blocks instead of ``layer``: one union graph per trace. A ``--layer``
            or ``--layers`` flag replaces both keys of the config file.
        nodes: ``all`` (prompt + answer tokens) or ``answer`` (answer tokens only).
        threshold: Keep an edge when the head-aggregated attention is >= this (the seed's 0.01).
        top_k: Keep at most this many incoming edges per token (null: all).
        head_mode: ``mean`` (the seed's) or ``max`` over heads, or ``heads`` (one edge feature
            per head; threshold and top-k apply to the mean).
        self_loops: Keep each token's attention to itself.
        topology: Attach graph-level topology features (PageRank, clustering, betweenness,
            answer-to-prompt attention mass); betweenness makes building slower.
        labels: ``index`` (the store's labels), ``judged`` (the packaged judgements of the
            store's model and dataset) or a judgement JSONL file (docs/LABELS.md).
        split_seed: Seed of the train/val/test split.
        split_ratios: Train, val and test fractions.
        force_reload: Build again even if the same graphs are already cached.
    """

    traces: str = "traces_data/smollm2_135M_demo"
    root: str = "graphs_data/smollm2_135M_demo"
    layer: int | None = 15
    layers: list[int] | None = None
    nodes: str = "all"
    threshold: float = 0.01
    top_k: int | None = None
    head_mode: str = "mean"
    self_loops: bool = True
    topology: bool = False
    labels: str = "index"
    split_seed: int = 0
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    force_reload: bool = False
