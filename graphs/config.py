"""Settings of ``python -m graphs build`` and ``python -m graphs compare``: every field is a flag
and a YAML key of the file given to ``--config`` with one spelling (``split_seed`` ↔
``--split_seed``; the graph spec's fields ↔ ``graph:`` / ``--graph.top_k``). See
``configs/graphs/default.yaml`` and ``configs/graphs/compare.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

from graphs.spec import GraphSpec


@dataclass
class GraphBuildConfig:
    """Build the graph dataset of a trace store (one graph per trace, cached under root).

    Args:
        traces: Trace store directory written by ``python -m extraction``.
        root: Dataset folder: processed graphs and ``splits.json`` go here.
        graph: Which graphs (a mapping of graph options, or a YAML file of them such as
            configs/graphs/layer15.yaml).
        labels: ``index`` (the store's labels), ``judged`` (the packaged judgements of the
            store's model and dataset) or a judgement JSONL file (docs/LABELS.md).
        split_seed: Seed of the train/val/test split.
        split_ratios: Train, val and test fractions.
        force_reload: Build again even if the same graphs are already cached.
    """

    traces: str = "traces_data/smollm2_135M_demo"
    root: str = "graphs_data/smollm2_135M_demo"
    graph: GraphSpec = field(default_factory=lambda: GraphSpec(block=15))
    labels: str = "index"
    split_seed: int = 0
    split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    force_reload: bool = False


@dataclass
class GraphCompareConfig:
    """Compare the graphs of hallucinated and correct answers, block by block and statistic by
    statistic: effect sizes, tests, pictures (see docs/ANALYSIS.md).

    Args:
        traces: Trace store directory written by ``python -m extraction``.
        graph: The graphs to compare: ``block`` or ``blocks`` are the blocks (each measured on
            its own graph; neither: every stored block), the other options the edge rule.
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
    graph: GraphSpec = field(default_factory=GraphSpec)
    output: str = "runs/compare"
    attention_layer: int | None = None
    bootstrap: int = 1000
    seed: int = 0
    fdr: float = 0.05
    top: int = 6
