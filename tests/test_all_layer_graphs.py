"""All-layer token graphs (``combine: union``, ``head_mode: any``): equal to a plain loop over the
stored attentions, on a synthetic store and (slow) on real SmolLM2 traces; options, cache keys."""

from __future__ import annotations

import pytest
import torch

from common import UserError
from extraction.store import TraceStore
from graphs import HallucinationGraphDataset
from graphs.spec import GraphSpec


def loop_union_graph(
    store: TraceStore,
    question_id: str,
    layers: list[int],
    threshold: float,
    top_k: int | None = None,
    self_loops: bool = True,
    prompt_edges: bool = True,
) -> tuple[list[tuple[int, int]], list[list[float]], list[list[float]]]:
    """Edges ``(j, i)``, their ``L * H`` attention values and each token's ``L * H`` diagonal
    values, one token pair and one (layer, head) at a time."""
    attention = [store.attention(question_id, layer).float() for layer in layers]
    n_prompt = store.rows[question_id].n_prompt_tokens
    heads = len(attention[0])
    pairs = [(position, head) for position in range(len(layers)) for head in range(heads)]
    seq_len = attention[0].shape[-1]
    strongest = {}  # (position, head, i) -> the top-k sources of that row, ties to earlier j
    if top_k is not None:
        for position, head in pairs:
            for i in range(seq_len):
                row = attention[position][head, i].tolist()
                sources = [j for j in range(seq_len) if self_loops or j != i]
                ranked = sorted(sources, key=lambda j: (-row[j], j))
                strongest[position, head, i] = set(ranked[:top_k])
    edges, values = [], []
    for i in range(seq_len):
        for j in range(seq_len):
            if (i == j and not self_loops) or (not prompt_edges and i < n_prompt and j < n_prompt):
                continue
            weights = [float(attention[p][h, i, j]) for p, h in pairs]
            passes = [
                weight >= torch.tensor(threshold, dtype=torch.float32).item()
                and (top_k is None or j in strongest[p, h, i])
                for weight, (p, h) in zip(weights, pairs, strict=True)
            ]
            if any(passes):
                edges.append((j, i))
                values.append(weights)
    diagonal = [[float(attention[p][h, i, i]) for p, h in pairs] for i in range(seq_len)]
    return edges, values, diagonal


def assert_equal_to_loop(dataset, store: TraceStore, layers: list[int], **rule) -> None:
    assert len(dataset) > 0
    for data in dataset:
        edges, values, diagonal = loop_union_graph(store, data.question_id, layers, **rule)
        assert [tuple(edge) for edge in data.edge_index.T.tolist()] == edges
        assert data.edge_attr.dtype == torch.float16
        assert data.edge_attr.float().tolist() == values  # every column, exactly
        assert data.x[:, -len(diagonal[0]) :].tolist() == diagonal


RULES = [
    {"threshold": 0.01},
    {"threshold": 0.2, "prompt_edges": False},
    {"threshold": 0.05, "top_k": 2, "self_loops": False},
    {"threshold": 0.01, "top_k": 1, "prompt_edges": False},
]


@pytest.mark.parametrize("rule", RULES)
def test_union_graph_equals_a_loop_over_every_layer_and_head(synthetic_store, tmp_path, rule):
    store = TraceStore(synthetic_store)
    spec = GraphSpec(
        blocks="all", combine="union", head_mode="any", node_features="attention_diagonal", **rule
    )
    dataset = HallucinationGraphDataset(tmp_path, synthetic_store, spec)
    assert dataset.blocks == [0, 1]
    assert dataset[0].x.shape[1] == 2 * 4 and dataset[0].edge_attr.shape[1] == 8
    assert_equal_to_loop(dataset, store, [0, 1], **rule)


def test_node_features_both_and_the_hidden_layer(synthetic_store, tmp_path):
    store = TraceStore(synthetic_store)
    common = dict(blocks=[1, 0], combine="union", head_mode="any", node_features="both")
    dataset = HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(hidden_block=0, **common)
    )
    for data in dataset:
        hidden = store.resid_post(data.question_id, 0).float()
        assert torch.equal(data.x[:, :32], hidden) and data.x.shape[1] == 32 + 8
        assert data.blocks == [1, 0] and not hasattr(data, "node_layer")
        diagonal = store.attention(data.question_id, 1).diagonal(dim1=1, dim2=2).T.float()
        assert torch.equal(data.x[:, 32:36], diagonal)  # column k = position * heads + head
    default = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(**common))
    assert default.spec.hidden_block == 0  # the middle of [1, 0]
    assert default.spec.widths(32, 4) == (40, 8)
    assert GraphSpec(blocks=[1, 0]).resolve([0, 1]).widths(32, 4) == (32, None)


def test_answer_nodes_keep_the_answer_block(synthetic_store, tmp_path):
    dataset = HallucinationGraphDataset(
        tmp_path,
        synthetic_store,
        GraphSpec(blocks="all", combine="union", head_mode="any", nodes="answer"),
    )
    store = TraceStore(synthetic_store)
    for data in dataset:
        n_answer = store.rows[data.question_id].n_answer_tokens
        assert data.num_nodes == n_answer and bool(data.is_answer.all())
        assert data.edge_attr.shape == (data.num_edges, 8)


def test_prompt_edges_and_node_features_in_single_layer_graphs(synthetic_store, tmp_path):
    store = TraceStore(synthetic_store)
    dataset = HallucinationGraphDataset(
        tmp_path,
        synthetic_store,
        GraphSpec(block=1, prompt_edges=False, node_features="attention_diagonal"),
    )
    for data in dataset:
        source, target = data.edge_index
        assert bool((data.is_answer[source] | data.is_answer[target]).all())
        attention = store.attention(data.question_id, 1)
        assert torch.equal(data.x, attention.diagonal(dim1=1, dim2=2).T.float())


def test_new_options_key_the_cache(synthetic_store, tmp_path):
    union = dict(blocks="all", combine="union", head_mode="any")
    directories = {
        HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(**options)).processed_dir
        for options in [
            {"blocks": "all"},
            union,
            {**union, "prompt_edges": False},
            {**union, "node_features": "both"},
            {**union, "node_features": "both", "hidden_block": 0},
        ]
    }
    assert len(directories) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": "all", "combine": "concat"}, "combine"),
        ({"blocks": "al"}, "block numbers or all"),
        ({"block": 1, "hidden_block": 0}, "hidden_block is for blocks with combine: union"),
        ({"blocks": "all", "combine": "union", "hidden_block": 5}, "block 5 is not stored"),
        ({"blocks": "all", "combine": "union", "topology": True}, "topology"),
        ({"block": 1, "node_features": "diagonal"}, "node_features"),
        ({"block": 1, "prompt_edges": "no"}, "prompt_edges"),
    ],
)
def test_bad_union_options(synthetic_store, tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(**kwargs))


@pytest.mark.slow
def test_union_graph_equals_a_loop_on_real_smollm2_traces(smollm2_truthfulqa_store, tmp_path):
    """All 30 x 9 (layer, head) pairs of the real model, on the first three traces."""
    store = TraceStore(smollm2_truthfulqa_store)
    for rule in ({"threshold": 0.01, "prompt_edges": False}, {"threshold": 0.3, "top_k": 2}):
        spec = GraphSpec(
            blocks="all", combine="union", head_mode="any", node_features="both", **rule
        )
        dataset = HallucinationGraphDataset(tmp_path, smollm2_truthfulqa_store, spec)
        assert dataset.blocks == list(range(30))
        assert dataset[0].edge_attr.shape[1] == dataset[0].x.shape[1] - 576 == 270
        assert_equal_to_loop(dataset.index_select(range(3)), store, dataset.blocks, **rule)
