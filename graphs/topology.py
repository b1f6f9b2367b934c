"""Graph-level topology features of one layer's graph: the seed's hypotheses as numbers.

The seed expects hallucinated answers to attend less to the context (weak answer→prompt
edges) and to show distinctive structure (clustering, centrality). Everything here is tensor
code except betweenness, for which networkx's exact Brandes algorithm is the only sound choice.
"""

from __future__ import annotations

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Data

from graphs.build import edge_weights

FEATURES = (
    "answer_prompt_mass",
    "pagerank_answer_mass",
    "pagerank_max",
    "clustering",
    "betweenness_mean",
    "betweenness_max",
)


def answer_prompt_mass(data: Data) -> float:
    """Kept attention weight from answer tokens to prompt tokens, per answer token (0 when the
    graph has no prompt or no answer nodes)."""
    source, target = data.edge_index
    to_prompt = data.is_answer[target] & ~data.is_answer[source]
    n_answer = int(data.is_answer.sum())
    return float(edge_weights(data)[to_prompt].sum()) / n_answer if n_answer else 0.0


def pagerank(data: Data, alpha: float = 0.85, tol: float = 1e-6, max_iter: int = 100) -> Tensor:
    """``[N]`` PageRank of a random walk that moves from each token to the tokens it attends to,
    with probability proportional to the kept weights: where attention flows, rank collects.

    That is the seed graph's edges reversed, and this equals ``nx.pagerank(G.reverse(),
    weight="weight")`` (same damping, dangling-node rule and stopping test).
    """
    n = data.num_nodes
    attended, attending = data.edge_index
    weight = edge_weights(data).double()
    out_strength = torch.zeros(n, dtype=torch.float64).index_add_(0, attending, weight)
    step = weight / out_strength[attending]
    dangling = out_strength == 0
    rank = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(max_iter):
        previous = rank
        flow = torch.zeros_like(rank).index_add_(0, attended, rank[attending] * step)
        rank = alpha * (flow + rank[dangling].sum() / n) + (1 - alpha) / n
        if (rank - previous).abs().sum() < n * tol:
            break
    return rank


def clustering(data: Data) -> float:
    """Average clustering coefficient of the undirected, unweighted graph without self-loops;
    equals ``nx.average_clustering(G.to_undirected())``."""
    n = data.num_nodes
    adjacency = torch.zeros(n, n)
    adjacency[data.edge_index[0], data.edge_index[1]] = 1
    adjacency = torch.maximum(adjacency, adjacency.T).fill_diagonal_(0)
    degree = adjacency.sum(dim=1)
    closed = ((adjacency @ adjacency) * adjacency).sum(dim=1)  # twice the triangles at each node
    possible = degree * (degree - 1)
    local = torch.where(possible > 0, closed / possible.clamp(min=1), 0.0)
    return float(local.mean())


def betweenness(data: Data) -> Tensor:
    """``[N]`` normalised, unweighted betweenness centrality (networkx)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(data.num_nodes))
    graph.add_edges_from(data.edge_index.T.tolist())
    scores = nx.betweenness_centrality(graph)
    return torch.tensor([scores[node] for node in range(data.num_nodes)], dtype=torch.float64)


def graph_features(data: Data) -> dict[str, float]:
    """The :data:`FEATURES` of one single-layer graph, in that order."""
    rank = pagerank(data)
    between = betweenness(data)
    return {
        "answer_prompt_mass": answer_prompt_mass(data),
        "pagerank_answer_mass": float(rank[data.is_answer].sum()),
        "pagerank_max": float(rank.max()),
        "clustering": clustering(data),
        "betweenness_mean": float(between.mean()),
        "betweenness_max": float(between.max()),
    }
