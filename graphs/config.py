"""Settings of ``python -m graphs build`` and ``python -m graphs compare``: every field is a flag
(``top_k`` ↔ ``--top-k``) and a key of the YAML given to ``--config`` (see
``configs/graphs/default.yaml`` and ``configs/graphs/compare.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GraphOptions:
    """How one layer of a trace becomes a graph (:func:`graphs.build.trace_to_graph`).

    Args:
        nodes: ``all`` (prompt + answer tokens) or ``answer`` (answer tokens only).
        threshold: Keep an edge when the head-aggregated attention is >= this (the seed's 0.01).
        top_k: Keep at most this many incoming edges per token (null: all).
        head_mode: ``mean`` (the seed's) or ``max`` over heads, or ``heads`` (one edge feature
            per head; threshold and top-k apply to the mean), or ``any`` (an edge when any head
            passes the threshold and top-k; every head's value, half precision, in edge_attr).
        self_loops: Keep each token's attention to itself.
        prompt_edges: Keep the edges between two prompt tokens (false drops them).
        node_features: ``hidden`` (the block's output), ``attention_diagonal`` (each head's
            attention of a token to itself) or ``both``.
    """

    nodes: str = "all"
    threshold: float = 0.01
    top_k: int | None = None
    head_mode: str = "mean"
    self_loops: bool = True
    prompt_edges: bool = True
    node_features: str = "hidden"

    def graph_options(self) -> dict:
        """The keyword arguments of :func:`graphs.build.trace_to_graph` and the dataset."""
        return {
            "nodes": self.nodes,
            "threshold": self.threshold,
            "top_k": self.top_k,
            "head_mode": self.head_mode,
            "self_loops": self.self_loops,
            "prompt_edges": self.prompt_edges,
            "node_features": self.node_features,
        }


@dataclass
class GraphBuildConfig(GraphOptions):
    """Build the graph dataset of a trace store (one graph per trace, cached under root).

    Args:
        traces: Trace store directory written by ``python -m extraction``.
        root: Dataset folder: processed graphs and ``splits.json`` go here.
        layer: The block whose graph to build (attention of block l, hidden state l + 1).
        layers: Several blocks instead of ``layer``, or ``all`` stored blocks: one graph per
            trace. A ``--layer`` or ``--layers`` flag replaces both keys of the config file.
        combine: How several ``layers`` make one graph: ``stack`` (the disjoint union of the
            per-layer graphs) or ``union`` (one token graph; the heads of every layer side by
            side: ``edge_attr`` column = layer position * heads + head).
        hidden_layer: With combine union: the block whose output is the hidden-state node
            feature (null: the middle one of layers).
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
    layers: list[str] | None = None
    combine: str = "stack"
    hidden_layer: int | None = None
    topology: bool = False
    labels: str = "index"
    split_seed: int = 0
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    force_reload: bool = False

    def __post_init__(self) -> None:
        # ``--layers 0 15`` arrives as strings, ``layers: all`` from YAML as one string.
        if isinstance(self.layers, list):
            self.layers = [int(x) if str(x).lstrip("-").isdigit() else x for x in self.layers]
            if self.layers == ["all"]:
                self.layers = "all"


@dataclass
class GraphCompareConfig(GraphOptions):
    """Compare the graphs of hallucinated and correct answers, layer by layer and statistic by
    statistic: effect sizes, tests, pictures (see docs/ANALYSIS.md).

    Args:
        traces: Trace store directory written by ``python -m extraction``.
        layers: Blocks to compare (null: every stored block).
        output: Folder for compare.json, compare.md and the PNGs (created; files replaced).
        attention_layer: Block of the class-mean attention picture (null: the compared block
            where answer-to-prompt mass differs most).
        bootstrap: Resamples of questions for the effect-size intervals.
        seed: Seed of the bootstrap.
        fdr: False discovery rate of the Benjamini-Hochberg correction (cells below it are
            marked significant).
        top: How many statistics get a distribution plot (each at its strongest block).
    """

    traces: str = "traces_data/smollm2_135M_demo"
    layers: list[int] | None = None
    output: str = "runs/compare"
    attention_layer: int | None = None
    bootstrap: int = 1000
    seed: int = 0
    fdr: float = 0.05
    top: int = 6
