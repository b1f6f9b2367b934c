"""Dataset build and the builders' graph assembly: what PyG's public constructors cost.

OMP_WAIT_POLICY=PASSIVE python -m benchmarks.bench_dataset_build --traces STORE --layer 15

Every labelled trace of a store, one layer (block 15 by default), the seed's graph settings,
one torch thread. Rows: the ``HallucinationGraphDataset`` of the store built into a fresh folder
(lazy store reads, the builder, one ``torch.save`` file per graph: ``python -m graphs build``),
then the builder alone on the same layers held in memory, as the ``list[Data]`` the dataset
saves (``traces_to_graphs``) and as one PyG ``Batch`` (``traces_to_batch``), and what PyG's
public constructors take of that: ``Data(...)`` of every graph, ``Batch.from_data_list`` of all
(the most a private assembly path could save). Best of ``--rounds``.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch_geometric.data import Batch, Data

from extraction.store import TraceStore
from graphs import GraphSpec, HallucinationGraphDataset
from graphs.build import traces_to_batch, traces_to_graphs
from graphs.source import read_layer


def best_seconds(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def dataset_build(traces: str, layer: int, n_graphs: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_dataset_build_"))
    try:
        dataset = HallucinationGraphDataset(root, traces, GraphSpec(block=layer))
        assert len(dataset) == n_graphs, (len(dataset), n_graphs)
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", required=True)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = TraceStore(args.traces)
    labelled = [qid for qid in store.question_ids if store.rows[qid].label is not None]
    inputs = [read_layer(store, qid, args.layer) for qid in labelled]
    attentions = [x.attention for x in inputs]
    hiddens = [x.hidden for x in inputs]
    prompts = [x.n_prompt_tokens for x in inputs]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    lengths = [x.attention.shape[-1] for x in inputs]
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread, "
        f"commit {commit}, load average {os.getloadavg()[0]:.2f}\n{len(labelled)} traces of "
        f"{args.traces}, block {args.layer}: {min(lengths)}-{max(lengths)} tokens (mean "
        f"{statistics.fmean(lengths):.0f}); best of {args.rounds}\n"
    )
    rows = {
        "dataset build (fresh folder, store reads, files)": lambda: dataset_build(
            args.traces, args.layer, len(labelled)
        ),
        "traces_to_graphs → list[Data], in memory": lambda: traces_to_graphs(
            attentions, hiddens, prompts
        ),
        "traces_to_batch → Batch, in memory": lambda: traces_to_batch(attentions, hiddens, prompts),
    }
    graphs = traces_to_graphs(attentions, hiddens, prompts)
    # The public constructors' own share: the most a private path could save.
    rows["of which: Data(**attributes) for every graph"] = lambda: [
        Data(**{key: graph[key] for key in graph.keys()})  # noqa: SIM118 (Data has no iter)
        for graph in graphs
    ]
    rows["of which: Batch.from_data_list(graphs)"] = lambda: Batch.from_data_list(graphs)
    print("| step | seconds | graphs/s | µs/graph |\n|---|---:|---:|---:|")
    for name, run in rows.items():
        seconds = best_seconds(run, args.rounds)
        print(
            f"| {name} | {seconds:.4f} | {len(labelled) / seconds:,.0f} | "
            f"{1e6 * seconds / len(labelled):.1f} |",
            flush=True,
        )
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
