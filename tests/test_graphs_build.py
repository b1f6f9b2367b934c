"""The vectorised graph builder against the seed's double loop, written out plainly."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from common import UserError
from extraction.store import TraceStore
from graphs import HallucinationGraphDataset, to_networkx, trace_to_graph
from graphs import cache as graphs_cache
from graphs.build import traces_to_batch, traces_to_graphs
from graphs.source import read_layer
from graphs.spec import GraphSpec

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


def reference_graph(attention, hidden, n_prompt_tokens: int, **options) -> nx.DiGraph:
    """The seed's networkx loop on one layer's tensors, with our index convention (features =
    output of the block) and the options spelled out one token pair at a time."""
    threshold = options.get("threshold", 0.01)
    top_k = options.get("top_k")
    head_mode = options.get("head_mode", "mean")
    self_loops = options.get("self_loops", True)
    start = n_prompt_tokens if options.get("nodes") == "answer" else 0
    heads = attention.float().numpy()[:, start:, start:]
    hidden = hidden.float().numpy()[start:]

    G = nx.DiGraph()
    for i in range(len(hidden)):
        G.add_node(i, features=hidden[i])
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


def seed_graph(store: TraceStore, question_id: str, layer: int, **options) -> nx.DiGraph:
    """:func:`reference_graph` of a stored trace, nodes labelled with their tokens."""
    record = store.record(question_id)
    G = reference_graph(
        store.attention(question_id, layer),
        store.resid_post(question_id, layer),
        record.n_prompt_tokens,
        **options,
    )
    start = record.n_prompt_tokens if options.get("nodes") == "answer" else 0
    for k, token in enumerate(record.tokens_decoded[start:]):
        G.nodes[k]["label"] = token
    return G


def assert_is_reference(data, expected: nx.DiGraph, n_prompt: int, seq_len: int, options) -> None:
    """``data`` has exactly the reference graph's nodes, features, edges (in the seed loop's
    order: by target, then source) and weights, and the right flags and positions."""
    assert data.num_nodes == expected.number_of_nodes()
    assert data.x.dtype == torch.float32
    for k in range(data.num_nodes):
        assert np.array_equal(data.x[k].numpy(), expected.nodes[k]["features"])
    edges = [[j, i] for j, i in expected.edges]
    assert data.edge_index.T.tolist() == sorted(edges, key=lambda e: (e[1], e[0]))
    ours = data.edge_attr if options.get("head_mode") == "heads" else data.edge_weight
    assert ours.dtype == torch.float32
    for (j, i), weight in zip(data.edge_index.T.tolist(), ours.numpy(), strict=True):
        assert np.array_equal(weight, expected.edges[j, i]["weight"]), (j, i)

    start = min(n_prompt, seq_len) if options.get("nodes") == "answer" else 0
    assert data.is_answer.tolist() == [start + k >= n_prompt for k in range(data.num_nodes)]
    position = torch.arange(start, seq_len, dtype=torch.float32) / max(seq_len - 1, 1)
    assert torch.equal(data.position, position)


def assert_same_graph(store: TraceStore, question_id: str, layer: int, options: dict) -> None:
    expected = seed_graph(store, question_id, layer, **options)
    inputs = read_layer(store, question_id, layer)
    data = trace_to_graph(
        inputs.attention, inputs.hidden, inputs.n_prompt_tokens, GraphSpec(**options)
    )
    seq_len = len(inputs.tokens_decoded)
    assert_is_reference(data, expected, inputs.n_prompt_tokens, seq_len, options)


def assert_batched_is_reference(attentions, hiddens, n_prompts, options) -> None:
    """traces_to_graphs == traces_to_batch == trace_to_graph of each == the reference."""
    graphs = traces_to_graphs(attentions, hiddens, n_prompts, GraphSpec(**options))
    batch = traces_to_batch(attentions, hiddens, n_prompts, GraphSpec(**options))
    assert len(graphs) == batch.num_graphs == len(attentions)
    for data, attention, hidden, n_prompt in zip(
        graphs, attentions, hiddens, n_prompts, strict=True
    ):
        expected = reference_graph(attention, hidden, n_prompt, **options)
        assert_is_reference(data, expected, n_prompt, attention.shape[-1], options)
        assert_equal_data(data, trace_to_graph(attention, hidden, n_prompt, GraphSpec(**options)))
    assert_equal_data(batch, Batch.from_data_list(graphs))
    for key in batch._slice_dict:
        assert torch.equal(batch._slice_dict[key], Batch.from_data_list(graphs)._slice_dict[key])
        assert torch.equal(batch._inc_dict[key], Batch.from_data_list(graphs)._inc_dict[key])
    for data, separated in zip(graphs, batch.to_data_list(), strict=True):
        assert_equal_data(data, separated)


def assert_equal_data(a, b) -> None:
    assert type(a) is type(b) and sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():  # noqa: SIM118 (Data has no iter)
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def synthetic_trace(seq_len: int, heads: int, generator: torch.Generator):
    """Peaked causal float16 attention, as a model's, and float16 hidden states."""
    logits = 2.5 * torch.randn(heads, seq_len, seq_len, generator=generator)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    attention = logits.masked_fill(~causal, float("-inf")).softmax(dim=-1).half()
    return attention, torch.randn(seq_len, 8, generator=generator).half()


BATCHED_SETTINGS = [
    {},
    {"self_loops": False},
    {"head_mode": "max"},
    {"head_mode": "max", "self_loops": False, "threshold": 0.05},
    {"nodes": "answer"},
    {"nodes": "answer", "self_loops": False},
    {"nodes": "answer", "head_mode": "max", "threshold": 0.002},
    {"top_k": 2, "threshold": 0.002},
    {"head_mode": "heads", "nodes": "answer", "top_k": 3, "self_loops": False},
]


@pytest.mark.parametrize(
    "options", BATCHED_SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_batched_builders_match_the_seed_loop_on_synthetic_traces(synthetic_store, options):
    store = TraceStore(synthetic_store)
    for layer in (0, 1):
        inputs = [read_layer(store, qid, layer) for qid in store.question_ids]
        assert_batched_is_reference(
            [x.attention for x in inputs],
            [x.hidden for x in inputs],
            [x.n_prompt_tokens for x in inputs],
            options,
        )


@pytest.mark.parametrize(
    "options", BATCHED_SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_batched_builders_on_a_mixture_of_lengths(options):
    generator = torch.Generator().manual_seed(0)
    lengths = [1, 40, 2, 65, 7, 3, 33]
    prompts = [0, 30, 2, 50, 3, 3, 40]  # no answer tokens in the 3rd and 6th, a prompt too long
    traces = [synthetic_trace(n, 9, generator) for n in lengths]
    attentions, hiddens = [a for a, _ in traces], [h for _, h in traces]
    assert_batched_is_reference(attentions, hiddens, prompts, options)


@pytest.mark.parametrize("heads", [1, 9, 16, 32, 40])
def test_head_mean_is_the_seeds_float32_mean_for_any_head_count(heads):
    # torch's own mean sums in shape-dependent blocks and differs from numpy's in the last bit
    # on a fair share of these; the seed's weights are numpy's.
    # Both ways of graphs.build._head_mean: numpy's mean of small inputs (a trace alone), torch
    # head by head for larger ones (a group of traces, or 32 heads of the 38-token trace).
    generator = torch.Generator().manual_seed(heads)
    traces = [synthetic_trace(n, heads, generator) for n in (38, 5, 64, 130)]
    for attention, _ in traces:
        attention[:, :, 0] = (torch.rand(attention.shape[:2], generator=generator) ** 4).half()
    attentions, hiddens = [a for a, _ in traces], [h for _, h in traces]
    assert_batched_is_reference(attentions, hiddens, [10, 1, 30, 100], {"threshold": 0.001})


def test_batched_builders_reject_bad_input():
    generator = torch.Generator().manual_seed(0)
    (a, h), (b, g) = synthetic_trace(4, 2, generator), synthetic_trace(5, 3, generator)
    assert traces_to_graphs([], [], []) == []
    with pytest.raises(ValueError, match="no traces"):
        traces_to_batch([], [], [])
    with pytest.raises(ValueError, match="one of each per trace"):
        traces_to_graphs([a, a], [h], [1, 1])
    with pytest.raises(ValueError, match=r"expected \[2, T, T\]"):
        traces_to_graphs([a, b], [h, g], [1, 1])
    with pytest.raises(ValueError, match="hidden-state rows"):
        traces_to_graphs([a], [g], [1])
    with pytest.raises(UserError, match="threshold"):
        traces_to_batch([a], [h], [1], GraphSpec(threshold=0))


def test_listed_graphs_equal_plain_data():
    generator = torch.Generator().manual_seed(0)
    traces = [synthetic_trace(n, 2, generator) for n in (6, 9)]
    graphs = traces_to_graphs([a for a, _ in traces], [h for _, h in traces], [2, 3])
    for data in graphs:
        rebuilt = Data(**{key: data[key] for key in data.keys()})  # noqa: SIM118
        assert_equal_data(data, rebuilt)
        assert data.num_nodes == rebuilt.num_nodes and data.num_edges == rebuilt.num_edges
        data.validate()


def test_matches_seed_loop_on_synthetic_traces(synthetic_store):
    store = TraceStore(synthetic_store)
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", SETTINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_batched_builders_match_the_seed_loop_on_smollm2(smollm2_triviaqa_store, options):
    store = TraceStore(smollm2_triviaqa_store)
    for layer in (0, 15, 29):
        inputs = [read_layer(store, qid, layer) for qid in store.question_ids]
        assert_batched_is_reference(
            [x.attention for x in inputs],
            [x.hidden for x in inputs],
            [x.n_prompt_tokens for x in inputs],
            options,
        )


def test_edges_run_from_attended_to_attending_token():
    attention = torch.zeros(1, 3, 3)
    attention[0, 0, 0] = 1.0
    attention[0, 1] = torch.tensor([0.25, 0.75, 0.0])
    attention[0, 2] = torch.tensor([0.0, 0.9921875, 0.0078125])
    data = trace_to_graph(
        attention, torch.zeros(3, 2), n_prompt_tokens=2, spec=GraphSpec(self_loops=False)
    )
    assert data.edge_index.tolist() == [[0, 1], [1, 2]]
    assert data.edge_weight.tolist() == [0.25, 0.9921875]
    assert data.is_answer.tolist() == [False, False, True]
    assert data.position.tolist() == [0.0, 0.5, 1.0]


def test_top_k_ties_keep_the_earlier_token():
    attention = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]])
    data = trace_to_graph(attention, torch.zeros(3, 1), n_prompt_tokens=1, spec=GraphSpec(top_k=1))
    assert data.edge_index.tolist() == [[0, 0, 2], [0, 1, 2]]


def test_to_networkx_is_the_seed_graph(synthetic_store):
    store = TraceStore(synthetic_store)
    for question_id in store.question_ids:
        expected = seed_graph(store, question_id, 1)
        graph = to_networkx(store, question_id, GraphSpec(block=1))
        assert list(graph.nodes(data="label")) == list(expected.nodes(data="label"))
        for node, features in expected.nodes(data="features"):
            assert np.array_equal(graph.nodes[node]["features"], features)
        assert set(graph.edges) == set(expected.edges)
        for j, i, weight in expected.edges(data="weight"):
            assert graph.edges[j, i]["weight"] == float(weight)
        assert graph.graph["question_id"] == question_id
        assert graph.graph["label"] == store.rows[question_id].label


def test_to_networkx_accepts_a_path_or_a_trace(synthetic_store):
    store = TraceStore(synthetic_store)
    question_id = store.question_ids[0]
    from_store = to_networkx(store, question_id, GraphSpec(block=0, top_k=2))
    for source, qid in ((str(synthetic_store), question_id), (store[question_id], None)):
        graph = to_networkx(source, qid, GraphSpec(block=0, top_k=2))
        assert list(graph.edges(data="weight")) == list(from_store.edges(data="weight"))


@pytest.mark.parametrize("chunk_traces, chunk_elements", [(4, 2**24), (64, 1)])
def test_dataset_builds_in_chunks_and_saves_each_graph_alone(
    synthetic_store, tmp_path, monkeypatch, chunk_traces, chunk_elements
):
    monkeypatch.setattr(graphs_cache, "CHUNK_TRACES", chunk_traces)
    monkeypatch.setattr(graphs_cache, "CHUNK_ELEMENTS", chunk_elements)
    store = TraceStore(synthetic_store)
    dataset = HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(block=1, self_loops=False)
    )
    assert dataset.question_ids == store.question_ids  # 6 traces: chunks of 4 + 2, or of 1
    for data, entry in zip(dataset, dataset.entries, strict=True):
        inputs = read_layer(store, entry["question_id"], 1)
        alone = trace_to_graph(
            inputs.attention, inputs.hidden, inputs.n_prompt_tokens, GraphSpec(self_loops=False)
        )
        for key in alone.keys():  # noqa: SIM118 (Data has no iter)
            assert torch.equal(data[key], alone[key]), key
        saved = torch.load(Path(dataset.processed_dir) / entry["file"], weights_only=True)
        for key, value in saved.items():
            if torch.is_tensor(value):  # the file holds this graph's tensors, not the chunk's
                assert value.untyped_storage().nbytes() == value.nbytes, key
