"""Dataset build and the builders' graph assembly: what PyG's public constructors cost.

OMP_WAIT_POLICY=PASSIVE python -m benchmarks.bench_dataset_build --traces STORE --n 200

The first n labelled traces of a store, one layer (block 15 by default), the seed's graph
settings, one torch thread. Rows: a ``HallucinationGraphDataset`` built into a fresh folder
(lazy store reads, the builder, one ``torch.save`` file per graph: ``python -m graphs build``),
then the builder alone on the same layers held in memory, as the ``list[Data]`` the dataset
saves (``traces_to_graphs``) and as one PyG ``Batch`` (``traces_to_batch``). Best of ``--rounds``.
Run it on two commits to compare how ``Data``/``Batch`` objects are assembled.
"""

from __future__ import annotations

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

from benchmarks.bench_all_layer_graphs import FirstTraces
from extraction.store import TraceStore
from graphs import HallucinationGraphDataset
from graphs.build import traces_to_batch, traces_to_graphs
from graphs.source import read_layer


def best_seconds(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def dataset_build(traces: str, layer: int, keep: FirstTraces) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_dataset_build_"))
    try:
        dataset = HallucinationGraphDataset(root, traces, layer=layer, pre_filter=keep)
        assert len(dataset) == len(keep.question_ids), (len(dataset), len(keep.question_ids))
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", required=True)
    parser.add_argument("--n", type=int, default=200, help="the first n labelled traces")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = TraceStore(args.traces)
    labelled = [qid for qid in store.question_ids if store.rows[qid]["label"] is not None]
    first = labelled[: args.n]
    inputs = [read_layer(store, qid, args.layer) for qid in first]
    attentions = [x.attention for x in inputs]
    hiddens = [x.hidden for x in inputs]
    prompts = [x.n_prompt_tokens for x in inputs]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    lengths = [x.attention.shape[-1] for x in inputs]
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread, "
        f"commit {commit}, load average {os.getloadavg()[0]:.2f}\n{len(first)} traces of "
        f"{args.traces}, block {args.layer}: {min(lengths)}-{max(lengths)} tokens (mean "
        f"{statistics.fmean(lengths):.0f}); best of {args.rounds}\n"
    )
    rows = {
        "dataset build (fresh folder, store reads, files)": lambda: dataset_build(
            args.traces, args.layer, FirstTraces(first)
        ),
        "traces_to_graphs → list[Data], in memory": lambda: traces_to_graphs(
            attentions, hiddens, prompts
        ),
        "traces_to_batch → Batch, in memory": lambda: traces_to_batch(attentions, hiddens, prompts),
    }
    print("| step | seconds | graphs/s | µs/graph |\n|---|---:|---:|---:|")
    for name, run in rows.items():
        seconds = best_seconds(run, args.rounds)
        print(
            f"| {name} | {seconds:.4f} | {len(first) / seconds:,.0f} | "
            f"{1e6 * seconds / len(first):.1f} |",
            flush=True,
        )
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
