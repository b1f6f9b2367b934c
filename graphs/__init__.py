"""Stage 2: each block of a trace as a token graph, and the graph dataset (``python -m graphs``).

Reads trace stores only through ``extraction.store``; never imports ``transformers``.
``python -m graphs`` imports this package before ``__main__``, and the package imports torch, so
the thread policy is set here, first (``common.threads``).
"""

from common import set_thread_policy

set_thread_policy()

from graphs.build import stack_layers, trace_to_graph, traces_to_batch, traces_to_graphs
from graphs.dataset import HallucinationGraphDataset, store_splits
from graphs.nx_export import to_networkx
from graphs.spec import GraphSpec, new_names
from graphs.splits import SCORED_GENERATION, SPLIT_BY, SPLITS, SplitBy, make_splits
from graphs.topology import graph_features

__all__ = [
    "SCORED_GENERATION",
    "SPLITS",
    "SPLIT_BY",
    "GraphSpec",
    "HallucinationGraphDataset",
    "SplitBy",
    "graph_features",
    "make_splits",
    "new_names",
    "stack_layers",
    "store_splits",
    "to_networkx",
    "trace_to_graph",
    "traces_to_batch",
    "traces_to_graphs",
]
