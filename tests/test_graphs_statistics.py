"""Each statistic of ``graphs.statistics`` on small hand-built graphs with known values."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
from torch_geometric.data import Data

from graphs import statistics as st


def graph(edges: dict[tuple[int, int], float], n: int, answer: list[int], x=None) -> Data:
    """Edges ``(j, i) -> weight``: token ``i`` attends to ``j`` (the project's ``j → i``)."""
    pairs = sorted(edges, key=lambda pair: (pair[1], pair[0]))
    return Data(
        x=torch.tensor(x, dtype=torch.float32) if x is not None else torch.zeros(n, 2),
        edge_index=torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1),
        edge_weight=torch.tensor([edges[pair] for pair in pairs], dtype=torch.float32),
        is_answer=torch.tensor([node in answer for node in range(n)]),
        position=torch.arange(n, dtype=torch.float32) / max(n - 1, 1),
        num_nodes=n,
    )


# Four tokens: a two-token prompt (0, 1) and a two-token answer (2, 3); every attention row sums
# to 1, as the head mean of a causal model's does.
ROWS = {0: [1.0], 1: [0.6, 0.4], 2: [0.5, 0.2, 0.3], 3: [0.4, 0.1, 0.2, 0.3]}
CAUSAL = {(j, i): w for i, row in ROWS.items() for j, w in enumerate(row)}
HIDDEN = [[1, 1], [2, 2], [6, 8], [0, 1]]


@pytest.fixture
def causal() -> Data:
    return graph(CAUSAL, 4, answer=[2, 3], x=HIDDEN)


def entropy(row: list[float]) -> float:
    return -sum(p * math.log(p) for p in row)


def test_attention_statistics(causal):
    assert st.answer_length(causal) == 2 and st.prompt_length(causal) == 2
    assert st.answer_to_prompt_mass(causal) == pytest.approx((0.5 + 0.2 + 0.4 + 0.1) / 2)
    assert st.attention_sink_mass(causal) == pytest.approx((0.5 + 0.4) / 2)
    assert st.answer_in_degree(causal) == 3.5  # 3 and 4 attended tokens
    assert st.answer_out_degree(causal) == 1.5  # token 2 is attended by 2 and 3, token 3 by 3
    expected = (entropy(ROWS[2]) + entropy(ROWS[3])) / 2
    assert st.answer_attention_entropy(causal) == pytest.approx(expected)
    assert st.answer_hidden_norm(causal) == pytest.approx((10 + 1) / 2)


def test_entropy_renormalises_kept_weights():
    # Token 1 kept two edges of 0.3 each (the rest fell under the threshold): entropy ln 2.
    data = graph({(0, 0): 1.0, (0, 1): 0.3, (1, 1): 0.3}, 2, answer=[1])
    assert st.answer_attention_entropy(data) == pytest.approx(math.log(2))


def test_structure_statistics(causal):
    assert st.density(causal) == 6 / 12  # every causal pair kept: half of N (N - 1)
    assert st.reciprocity(causal) == 0  # causal attention is never reciprocal
    assert st.average_clustering(causal) == 1.0  # the undirected graph is complete
    assert st.reciprocity(graph({(0, 1): 1, (1, 0): 1, (0, 2): 1}, 3, answer=[2])) == 2 / 3
    assert math.isnan(st.reciprocity(graph({(0, 0): 1.0}, 1, answer=[0])))
    assert math.isnan(st.density(graph({(0, 0): 1.0}, 1, answer=[0])))


def test_betweenness_of_a_chain():
    # 0 → 1 → 2 → 3: token 2 lies on the shortest paths 0 ⇝ 3 and 1 ⇝ 3, of (n-1)(n-2) = 6.
    chain = graph({(0, 1): 1, (1, 2): 1, (2, 3): 1}, 4, answer=[2, 3])
    assert st.answer_betweenness(chain) == pytest.approx((2 / 6 + 0) / 2)


def test_pagerank_answer_share(causal):
    mutual = graph({(0, 1): 0.5, (1, 0): 0.5}, 2, answer=[1])
    assert st.pagerank_answer_share(mutual) == pytest.approx(0.5)
    reference = nx.DiGraph()
    reference.add_weighted_edges_from((i, j, w) for (j, i), w in CAUSAL.items())
    ranks = nx.pagerank(reference, weight="weight")
    assert st.pagerank_answer_share(causal) == pytest.approx(ranks[2] + ranks[3], abs=1e-5)


def test_laplacian_eigenvalues_of_causal_attention(causal):
    # Degree of token j: attention it receives / (N - j): 2.5/4, 0.7/3, 0.5/2, 0.3/1; minus
    # its self-attention 1.0, 0.4, 0.3, 0.3 gives the diagonal of the triangular Laplacian.
    expected = sorted([2.5 / 4 - 1.0, 0.7 / 3 - 0.4, 0.5 / 2 - 0.3, 0.3 - 0.3], reverse=True)
    values = st.laplacian_eigenvalues(causal)
    assert values.tolist() == pytest.approx(expected)
    assert st.laplacian_eigenvalue(causal, 1) == pytest.approx(0.0)
    assert st.laplacian_eigenvalue(causal, 2) == pytest.approx(-0.05)
    assert math.isnan(st.laplacian_eigenvalue(graph({(0, 0): 1.0}, 1, answer=[0]), 2))


def test_laplacian_eigenvalues_of_a_non_causal_graph():
    # A = [[0, 1], [1, 0]], degrees 1/2 and 1/1: L = [[0.5, -1], [-1, 1]].
    mutual = graph({(0, 1): 1.0, (1, 0): 1.0}, 2, answer=[1])
    root = math.sqrt(0.25 + 4)
    expected = [(1.5 + root) / 2, (1.5 - root) / 2]
    assert st.laplacian_eigenvalues(mutual).tolist() == pytest.approx(expected)


def test_answer_only_graph_has_no_prompt_statistics():
    answer_only = graph({(0, 0): 1.0, (0, 1): 0.5, (1, 1): 0.5}, 2, answer=[0, 1])
    answer_only.position = torch.tensor([0.6, 1.0])  # tokens 3 and 5 of a longer sequence
    assert math.isnan(st.answer_to_prompt_mass(answer_only))
    assert math.isnan(st.attention_sink_mass(answer_only))
    assert math.isnan(st.prompt_length(answer_only))
    assert st.pagerank_answer_share(answer_only) == pytest.approx(1.0)


def test_graph_statistics_names_and_descriptions(causal):
    values = st.graph_statistics(causal)
    assert list(values) == list(st.STATISTICS)
    assert {"laplacian_eig_1", "laplacian_eig_3", "answer_hidden_norm"} <= set(values)
    for name in st.STATISTICS:
        assert st.describe(name).endswith(".") and len(st.describe(name)) > 20


def test_same_values_on_the_graph_that_build_makes(causal):
    """The hand-built graph follows the builder's conventions: the attention matrix of ``ROWS``
    through ``trace_to_graph`` gives the same statistics."""
    from graphs.build import trace_to_graph

    attention = torch.zeros(1, 4, 4)
    for i, row in ROWS.items():
        attention[0, i, : len(row)] = torch.tensor(row)
    built = trace_to_graph(attention, torch.tensor(HIDDEN, dtype=torch.float32), n_prompt_tokens=2)
    for name, value in st.graph_statistics(built).items():
        assert value == pytest.approx(st.STATISTICS[name](causal), nan_ok=True), name
