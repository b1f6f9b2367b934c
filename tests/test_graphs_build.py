"""The vectorised graph builder against the seed's double loop, written out plainly."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from extraction.store import TraceStore
from graphs import to_networkx, trace_to_graph
from graphs.source import read_layer

SETTINGS = [
    {},  # the seed's: head mean, >= 0.01, self-loops, all tokens
    {"threshold": 0.05},
    {"threshold": 0.002},
    {"top_k": 3},
    {"top_k": 5, "threshold": 0.002, "self_loops": False},
    {"head_mode": "max"},
    {"head_mode": "max", "threshold": 0.1, "top_k": 2},
    {"head_mode": "heads"},
    {"head_mode": "heads", "top_k": 4, "self_loops": False},
    {"nodes": "answer"},
    {"nodes": "answer", "head_mode": "max", "threshold": 0.02, "self_loops": False},
    {"nodes": "answer", "head_mode": "heads", "top_k": 2},
]


def seed_graph(store: TraceStore, question_id: str, layer: int, **options) -> nx.DiGraph:
    """The seed's networkx loop, with our index convention (features = output of the block)
    and the options spelled out one token pair at a time."""
    threshold = options.get("threshold", 0.01)
    top_k = options.get("top_k")
    head_mode = options.get("head_mode", "mean")
    self_loops = options.get("self_loops", True)
    record = store.record(question_id)
    start = record["n_prompt_tokens"] if options.get("nodes") == "answer" else 0
    heads = store.attention(question_id, layer).float().numpy()[:, start:, start:]
    hidden = store.hidden_state(question_id, layer + 1).float().numpy()[start:]

    G = nx.DiGraph()
    for i, token in enumerate(record["tokens_decoded"][start:]):
        G.add_node(i, label=token, features=hidden[i])
    attn = heads.max(axis=0) if head_mode == "max" else heads.mean(axis=0)
    for i in range(len(attn)):
        sources = []
        for j in range(len(attn)):
            if attn[i, j] >= threshold and (self_loops or i != j):
                sources.append(j)
        if top_k is not None:
            sources = sorted(sources, key=lambda j: -attn[i, j])[:top_k]  # stable: earlier j
        for j in sources:
            G.add_edge(j, i, weight=heads[:, i, j] if head_mode == "heads" else attn[i, j])
    return G


def assert_same_graph(store: TraceStore, question_id: str, layer: int, options: dict) -> None:
    expected = seed_graph(store, question_id, layer, **options)
    inputs = read_layer(store, question_id, layer)
    data = trace_to_graph(inputs.attention, inputs.hidden, inputs.n_prompt_tokens, **options)

    assert data.num_nodes == expected.number_of_nodes()
    features = np.stack([expected.nodes[k]["features"] for k in range(data.num_nodes)])
    assert data.x.dtype == torch.float32
    assert np.array_equal(data.x.numpy(), features)
    edges = {(j, i): w for j, i, w in expected.edges(data="weight")}
    ours = data.edge_attr if options.get("head_mode") == "heads" else data.edge_weight
    assert len(data.edge_index.T) == len(edges)
    for (j, i), weight in zip(data.edge_index.T.tolist(), ours.numpy(), strict=True):
        assert np.array_equal(weight, edges[(j, i)]), (j, i)

    is_answer = data.is_answer.tolist()
    n_prompt = inputs.n_prompt_tokens
    start = n_prompt if options.get("nodes") == "answer" else 0
    assert is_answer == [start + k >= n_prompt for k in range(data.num_nodes)]
    seq_len = len(inputs.tokens_decoded)
    assert torch.allclose(data.position, (torch.arange(start, seq_len) / (seq_len - 1)).float())


def test_matches_seed_loop_on_tiny_model(tiny_store):
    store = TraceStore(tiny_store)
    for options in (SETTINGS[0], SETTINGS[4], SETTINGS[8], SETTINGS[11]):
        for question_id in store.question_ids:
            for layer in (0, 1):
                assert_same_graph(store, question_id, layer, options)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_matches_seed_loop_on_smollm2(smollm2_triviaqa_store, options):
    store = TraceStore(smollm2_triviaqa_store)
    for question_id in store.question_ids:
        for layer in (0, 15, 29):
            assert_same_graph(store, question_id, layer, options)


def test_edges_run_from_attended_to_attending_token():
    attention = torch.zeros(1, 3, 3)
    attention[0, 0, 0] = 1.0
    attention[0, 1] = torch.tensor([0.25, 0.75, 0.0])
    attention[0, 2] = torch.tensor([0.0, 0.9921875, 0.0078125])
    data = trace_to_graph(attention, torch.zeros(3, 2), n_prompt_tokens=2, self_loops=False)
    assert data.edge_index.tolist() == [[0, 1], [1, 2]]
    assert data.edge_weight.tolist() == [0.25, 0.9921875]
    assert data.is_answer.tolist() == [False, False, True]
    assert data.position.tolist() == [0.0, 0.5, 1.0]


def test_top_k_ties_keep_the_earlier_token():
    attention = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]])
    data = trace_to_graph(attention, torch.zeros(3, 1), n_prompt_tokens=1, top_k=1)
    assert data.edge_index.tolist() == [[0, 0, 2], [0, 1, 2]]


def test_to_networkx_is_the_seed_graph(tiny_store):
    store = TraceStore(tiny_store)
    for question_id in store.question_ids:
        expected = seed_graph(store, question_id, 1)
        graph = to_networkx(store, question_id, 1)
        assert list(graph.nodes(data="label")) == list(expected.nodes(data="label"))
        for node, features in expected.nodes(data="features"):
            assert np.array_equal(graph.nodes[node]["features"], features)
        assert set(graph.edges) == set(expected.edges)
        for j, i, weight in expected.edges(data="weight"):
            assert graph.edges[j, i]["weight"] == float(weight)
        assert graph.graph["question_id"] == question_id
        assert graph.graph["label"] == store.rows[question_id]["label"]


def test_to_networkx_accepts_a_path_or_a_trace(tiny_store):
    store = TraceStore(tiny_store)
    question_id = store.question_ids[0]
    from_store = to_networkx(store, question_id, 0, top_k=2)
    for source, qid in ((str(tiny_store), question_id), (store[question_id], None)):
        graph = to_networkx(source, qid, 0, top_k=2)
        assert list(graph.edges(data="weight")) == list(from_store.edges(data="weight"))
