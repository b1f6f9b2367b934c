"""Graphs per second: the vectorised builders against the seed's networkx double loop.

python -m benchmarks.bench_graphs --traces /tmp/stores/smollm2_triviaqa200 --n 20 --layer 15

Seed settings (head mean, attention >= 0.01, every token), the same traces and layer for every
row, one thread. The seed row runs the seed's snippet on float32 numpy arrays held in memory, as
a loaded pickle batch gives them. The comparison rows start from the store's float16 tensors in
memory: one trace at a time (``trace_to_graph``), or all n traces in one call of the batched
builder, as a list of ``Data`` (``traces_to_graphs``) or as the ``Batch`` a GNN consumes
(``traces_to_batch``); one batched row starts from the seed's own float32 arrays instead. Then
from the store itself (lazy reads included), then the seed's networkx graph. Synthetic traces of
given lengths show how the builders scale with the sequence length.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import os
import platform
import time
from collections.abc import Callable

import networkx as nx
import numpy as np
import torch

from extraction.store import TraceStore
from graphs import to_networkx, trace_to_graph
from graphs.build import traces_to_batch, traces_to_graphs
from graphs.source import LayerInputs, read_layer
from graphs.spec import GraphSpec

THRESHOLD = 0.01


def seed_graph(tokens: list[str], hidden: np.ndarray, attention: np.ndarray) -> nx.DiGraph:
    """The seed's snippet (``trace_extractor.md``, "Construir grafo por capa"), with ``>=``."""
    G = nx.DiGraph()
    for i, token in enumerate(tokens):
        G.add_node(i, label=token, features=hidden[i])
    attn = attention.mean(axis=0)
    for i in range(len(attn)):
        for j in range(len(attn)):
            if attn[i, j] >= THRESHOLD:
                G.add_edge(j, i, weight=attn[i, j])
    return G


def graphs_per_second(build: Callable[[], int], n_graphs: int, min_seconds: float) -> float:
    """Best of three rounds, each repeating ``build`` (all graphs) for at least ``min_seconds``."""
    best = float("inf")
    for _ in range(3):
        rounds, start = 0, time.perf_counter()
        while rounds == 0 or time.perf_counter() - start < min_seconds:
            build()
            rounds += 1
        best = min(best, (time.perf_counter() - start) / rounds)
    return n_graphs / best


def synthetic(seq_len: int, seed: int = 0, heads: int = 9, hidden: int = 576) -> LayerInputs:
    """A peaked causal attention (most rows put their weight on a few tokens, as real ones do)."""
    generator = torch.Generator().manual_seed(seq_len * 1000 + seed)
    logits = 2.5 * torch.randn(heads, seq_len, seq_len, generator=generator)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    attention = logits.masked_fill(~causal, float("-inf")).softmax(dim=-1).half()
    return LayerInputs(
        question_id=f"synthetic_{seq_len}_{seed}",
        attention=attention,
        hidden=torch.randn(seq_len, hidden, generator=generator).half(),
        n_prompt_tokens=seq_len // 2,
        tokens_decoded=[f"t{k}" for k in range(seq_len)],
        label=None,
        question="",
        answer="",
    )


def table(rows: list[tuple[str, Callable[[], int]]], n_graphs: int, min_seconds: float) -> None:
    """Graphs per second of each row, and its speed-up over the first."""
    print(f"| {'builder':<52} | graphs/s | speed-up |\n|{'-' * 54}|---------:|---------:|")
    baseline = None
    for name, build in rows:
        rate = graphs_per_second(build, n_graphs, min_seconds)
        baseline = baseline or rate
        print(f"| {name:<52} | {rate:>8.1f} | {rate / baseline:>7.1f}× |")


def seed_vs_ours(inputs: list[LayerInputs]) -> list[tuple[str, Callable[[], int]]]:
    """The seed's loop and our builders on the same traces in memory; each returns its edges."""
    seed_inputs = [
        (x.tokens_decoded, x.hidden.float().numpy(), x.attention.float().numpy()) for x in inputs
    ]
    attentions = [x.attention for x in inputs]
    hiddens = [x.hidden for x in inputs]
    prompts = [x.n_prompt_tokens for x in inputs]
    seed_attentions = [torch.from_numpy(attention) for _, _, attention in seed_inputs]
    seed_hiddens = [torch.from_numpy(hidden) for _, hidden, _ in seed_inputs]

    def seed() -> int:
        return sum(seed_graph(*arrays).number_of_edges() for arrays in seed_inputs)

    def ours() -> int:
        return sum(
            trace_to_graph(a, h, n).num_edges
            for a, h, n in zip(attentions, hiddens, prompts, strict=True)
        )

    def ours_list() -> int:
        return sum(data.num_edges for data in traces_to_graphs(attentions, hiddens, prompts))

    def ours_batch() -> int:
        return traces_to_batch(attentions, hiddens, prompts).num_edges

    def ours_batch_float32() -> int:
        return traces_to_batch(seed_attentions, seed_hiddens, prompts).num_edges

    rows = [
        ("seed: networkx double loop (numpy, in memory)", seed),
        ("trace_to_graph, one call per trace", ours),
        ("traces_to_graphs → list[Data], one call", ours_list),
        ("traces_to_batch → Batch, one call", ours_batch),
        ("traces_to_batch → Batch, from the seed's float32", ours_batch_float32),
    ]
    edges = {name: build() for name, build in rows}
    assert len(set(edges.values())) == 1, f"the builders disagree: {edges}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default="/tmp/stores/smollm2_triviaqa200")
    parser.add_argument("--n", type=int, default=20, help="traces (the first n of the store)")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="*",
        default=[128, 256, 512],
        help="also time synthetic traces of these lengths",
    )
    parser.add_argument(
        "--synthetic-n", type=int, default=4, help="synthetic traces of each length"
    )
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per timing round")
    args = parser.parse_args()
    torch.set_num_threads(1)

    store = TraceStore(args.traces)
    question_ids = store.question_ids[: args.n]
    inputs = [read_layer(store, qid, args.layer) for qid in question_ids]

    def ours_from_store() -> int:
        total = 0
        for qid in question_ids:
            x = read_layer(store, qid, args.layer)
            total += trace_to_graph(x.attention, x.hidden, x.n_prompt_tokens).num_edges
        return total

    def batch_from_store() -> int:
        return traces_to_batch(
            [store.attention(qid, args.layer) for qid in question_ids],
            [store.resid_post(qid, args.layer) for qid in question_ids],
            [store.rows[qid].n_prompt_tokens for qid in question_ids],
        ).num_edges

    def ours_networkx() -> int:
        return sum(
            to_networkx(store, qid, GraphSpec(block=args.layer)).number_of_edges()
            for qid in question_ids
        )

    lengths = [len(x.tokens_decoded) for x in inputs]
    edges = sum(trace_to_graph(x.attention, x.hidden, x.n_prompt_tokens).num_edges for x in inputs)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} on 1 thread, load average {load_average()}\n\n{len(inputs)} traces "
        f"of {args.traces}, block {args.layer}: {min(lengths)}-{max(lengths)} tokens (mean "
        f"{np.mean(lengths):.0f}), {edges / len(inputs):.0f} edges per graph\n"
    )
    rows = seed_vs_ours(inputs)
    rows += [
        ("trace_to_graph + lazy store read", ours_from_store),
        ("traces_to_batch + lazy store read", batch_from_store),
        ("to_networkx (store → seed's nx.DiGraph)", ours_networkx),
    ]
    table(rows, len(inputs), args.min_seconds)
    for seq_len in args.lengths:
        traces = [synthetic(seq_len, seed) for seed in range(args.synthetic_n)]
        edges = sum(
            trace_to_graph(x.attention, x.hidden, x.n_prompt_tokens).num_edges for x in traces
        )
        print(
            f"\n{len(traces)} synthetic traces, {seq_len} tokens, 9 heads, "
            f"{edges / len(traces):.0f} edges per graph\n"
        )
        table(seed_vs_ours(traces), len(traces), args.min_seconds)
    print(f"\nload average {load_average()}")


def load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


if __name__ == "__main__":
    main()
