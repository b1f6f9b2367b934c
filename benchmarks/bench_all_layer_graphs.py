"""Processed bytes per graph and build graphs/s of all-layer token graphs (every layer and head).

python -m benchmarks.bench_all_layer_graphs --traces /work/stores/smollm2_truthfulqa --n 100

Each row builds a ``HallucinationGraphDataset`` of the first n labelled traces into a fresh
folder (one torch thread): lazy store reads, the vectorised union over the L x H (layer, head)
pairs, and one ``torch.save`` file per graph, i.e. what ``python -m graphs build`` does. Bytes
are the processed files' sizes on disk. The single-layer row (block 15, the seed's settings) is
the reference.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from extraction.store import TraceStore
from graphs import GraphSpec, HallucinationGraphDataset

UNION = {"blocks": "all", "combine": "union", "head_mode": "any"}
ROWS: dict[str, dict] = {
    "block 15, head mean, hidden (today's default)": {"block": 15},
    "all layers, prompt edges, diagonal": {**UNION, "node_features": "attention_diagonal"},
    "all layers, no prompt edges, diagonal (charm.yaml)": {
        **UNION,
        "prompt_edges": False,
        "node_features": "attention_diagonal",
    },
    "all layers, no prompt edges, hidden + diagonal": {
        **UNION,
        "prompt_edges": False,
        "node_features": "both",
    },
    "all layers, no prompt edges, threshold 0.1": {
        **UNION,
        "prompt_edges": False,
        "node_features": "attention_diagonal",
        "threshold": 0.1,
    },
}


class FirstTraces:
    """pre_filter: the first n labelled traces of the store (named, so its repr keys the cache)."""

    def __init__(self, question_ids: list[str]) -> None:
        self.question_ids = frozenset(question_ids)

    def __call__(self, data) -> bool:
        return data.question_id in self.question_ids

    def __repr__(self) -> str:
        return f"FirstTraces({len(self.question_ids)})"


def build(traces: str, options: dict, keep: FirstTraces, n: int) -> tuple[float, list[int], list]:
    """Seconds to build, bytes of each graph file, and the graphs."""
    root = Path(tempfile.mkdtemp(prefix="bench_all_layer_"))
    try:
        start = time.perf_counter()
        dataset = HallucinationGraphDataset(root, traces, GraphSpec(**options), pre_filter=keep)
        seconds = time.perf_counter() - start
        assert len(dataset) == n, (len(dataset), n)
        directory = Path(dataset.processed_dir)
        sizes = [(directory / entry["file"]).stat().st_size for entry in dataset.entries]
        stats = [(data.num_nodes, data.num_edges, data.num_edge_features) for data in dataset]
        return seconds, sizes, stats
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", required=True)
    parser.add_argument("--n", type=int, default=100, help="the first n labelled traces")
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = TraceStore(args.traces)
    labelled = [qid for qid in store.question_ids if store.rows[qid].label is not None]
    first = labelled[: args.n]
    keep = FirstTraces(first)
    lengths = [store.rows[qid].seq_len for qid in first]
    model = store.manifest.model
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread, load "
        f"average {os.getloadavg()[0]:.2f}\n{len(first)} traces of {args.traces}: "
        f"{min(lengths)}-{max(lengths)} tokens (mean {statistics.fmean(lengths):.0f}); "
        f"{model.num_layers} layers x {model.num_heads} heads\n"
    )
    print("| graphs | edges/graph | edge features | KiB/graph | graphs/s |")
    print("|---|---:|---:|---:|---:|")
    for name, options in ROWS.items():
        seconds, sizes, stats = build(args.traces, options, keep, len(first))
        edges = statistics.fmean(edge for _, edge, _ in stats)
        width = stats[0][2] or "— (edge_weight)"
        print(
            f"| {name} | {edges:.0f} | {width} | {statistics.fmean(sizes) / 1024:.1f} | "
            f"{len(first) / seconds:.1f} |",
            flush=True,
        )
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
