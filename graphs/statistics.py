"""Per-graph statistics of one layer's token graph, for comparing hallucinated and correct answers.

Each statistic is a function ``Data -> float`` of a graph built by :mod:`graphs.build` (edge
``j → i`` carries how much token ``i`` attends to token ``j``; ``is_answer`` flags the answer
tokens; nodes are in token order), and ``nan`` where the graph does not define it (an answer-only
graph has no prompt tokens and no attention sink). "Answer token" statistics average over the
answer tokens, so they do not grow with the answer's length; ``answer_length`` and
``prompt_length`` are reported as controls, since anything that tracks them may only measure
length.

Only betweenness leaves tensor code (networkx's exact Brandes algorithm, as in
:mod:`graphs.topology`); PageRank, clustering and the answer→prompt mass are that module's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torch_geometric.data import Data

from graphs.build import edge_weights
from graphs.topology import answer_prompt_mass, betweenness, clustering, pagerank

LAPLACIAN_TOP_K = 3
CONTROLS = ("answer_length", "prompt_length")  # they describe the trace, not its attention
NAN = math.nan


def _answer_mean(per_node: Tensor, data: Data) -> float:
    """Mean of a ``[N]`` per-node value over the answer tokens (nan without any)."""
    values = per_node[data.is_answer]
    return float(values.double().mean()) if values.numel() else NAN


def _not_self_loop(data: Data) -> Tensor:
    return data.edge_index[0] != data.edge_index[1]


def answer_length(data: Data) -> float:
    """Control: the number of answer tokens in the graph (not a property of attention)."""
    return float(data.is_answer.sum())


def prompt_length(data: Data) -> float:
    """Control: the number of prompt tokens in the graph (nan for answer-only graphs); a graph's
    size moves density and clustering whatever the label."""
    n_prompt = int((~data.is_answer).sum())
    return float(n_prompt) if n_prompt else NAN


def pagerank_answer_share(data: Data) -> float:
    """Share of PageRank mass on the answer tokens (the walk follows attention to the attended
    token, see :func:`graphs.topology.pagerank`): how much attention flow ends in the answer."""
    return float(pagerank(data)[data.is_answer].sum())


def answer_to_prompt_mass(data: Data) -> float:
    """Kept attention from the answer tokens to the prompt tokens, per answer token (nan for a
    graph without prompt tokens): the seed's "does the answer look at the question"."""
    if bool(data.is_answer.all()):
        return NAN
    return answer_prompt_mass(data)


def attention_sink_mass(data: Data) -> float:
    """Mean attention the answer tokens give to the first token of the sequence (the attention
    sink), nan when the graph does not hold that token (answer-only graphs)."""
    sink = data.position == 0
    if not bool(sink.any()) or not bool(data.is_answer.any()):
        return NAN
    source, target = data.edge_index
    to_sink = sink[source] & data.is_answer[target]
    return float(edge_weights(data)[to_sink].double().sum()) / int(data.is_answer.sum())


def answer_in_degree(data: Data) -> float:
    """Mean number of kept edges into an answer token: how many tokens it attends to with
    weight >= the threshold (its self-loop included when kept)."""
    degree = torch.bincount(data.edge_index[1], minlength=data.num_nodes)
    return _answer_mean(degree, data)


def answer_out_degree(data: Data) -> float:
    """Mean number of kept edges out of an answer token: how many (later) tokens attend to it."""
    degree = torch.bincount(data.edge_index[0], minlength=data.num_nodes)
    return _answer_mean(degree, data)


def answer_attention_entropy(data: Data) -> float:
    """Mean entropy (nats) of the answer tokens' attention rows: each row is the kept weights of
    a token's incoming edges, renormalised to sum to 1 (tokens without kept edges left out).
    Low: attention focused on a few tokens; high: spread out."""
    weight = edge_weights(data).double()
    target = data.edge_index[1]
    row_sum = torch.zeros(data.num_nodes, dtype=torch.float64).index_add_(0, target, weight)
    p = weight / row_sum[target]
    terms = torch.where(p > 0, -p * p.log(), 0.0)
    entropy = torch.zeros_like(row_sum).index_add_(0, target, terms)
    has_row = data.is_answer & (row_sum > 0)
    return float(entropy[has_row].mean()) if bool(has_row.any()) else NAN


def answer_betweenness(data: Data) -> float:
    """Mean normalised (unweighted, directed) betweenness centrality of the answer tokens: how
    often they lie on shortest attention paths between other tokens."""
    return _answer_mean(betweenness(data), data)


def density(data: Data) -> float:
    """Edges without self-loops over ``N (N - 1)`` (``nx.density`` of the graph without its
    self-loops; at most 0.5 for causal attention)."""
    n = data.num_nodes
    return float(_not_self_loop(data).sum()) / (n * (n - 1)) if n > 1 else NAN


def reciprocity(data: Data) -> float:
    """Share of edges (self-loops aside) whose reverse edge is also kept (``nx.reciprocity``);
    nan without such edges. Causal attention has no ``i → j`` for ``j → i``, so this is 0 for
    every graph of a causal model and ``compare`` lists it as constant."""
    n = data.num_nodes
    source, target = data.edge_index[:, _not_self_loop(data)]
    if source.numel() == 0:
        return NAN
    forward = source * n + target
    return float(torch.isin(target * n + source, forward).double().mean())


def average_clustering(data: Data) -> float:
    """Average clustering coefficient of the undirected, unweighted graph
    (:func:`graphs.topology.clustering`)."""
    return clustering(data)


def laplacian_eigenvalues(data: Data) -> Tensor:
    """``[N]`` eigenvalues of the attention Laplacian of LapEigvals (Binkowski et al., 2025),
    largest first, on the graph's kept (head-aggregated) weights.

    With ``A[i, j]`` the weight of edge ``j → i`` (token ``i`` attends to ``j``), the degree of
    token ``j`` is the attention it receives divided by the number of tokens that can attend to
    it (``N - j``, itself included), and ``L = D - A``. Causal attention makes ``A`` (so ``L``)
    lower triangular, so the eigenvalues are the diagonal ``d_j - A[j, j]``; for any other graph
    they are the real parts of ``torch.linalg.eigvals(L)``.
    """
    n = data.num_nodes
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    adjacency.index_put_(
        (data.edge_index[1], data.edge_index[0]), edge_weights(data).double(), accumulate=True
    )
    degree = adjacency.sum(dim=0) / torch.arange(n, 0, -1, dtype=torch.float64)
    if bool(torch.triu(adjacency, diagonal=1).any()):
        values = torch.linalg.eigvals(torch.diag(degree) - adjacency).real
    else:
        values = degree - adjacency.diagonal()
    return values.sort(descending=True).values


def laplacian_eigenvalue(data: Data, rank: int) -> float:
    """The ``rank``-th largest (1 = largest) eigenvalue of :func:`laplacian_eigenvalues` (nan for
    a graph with fewer nodes)."""
    values = laplacian_eigenvalues(data)
    return float(values[rank - 1]) if rank <= len(values) else NAN


def answer_hidden_norm(data: Data) -> float:
    """Mean L2 norm of the answer tokens' hidden states (the node features ``x``)."""
    return _answer_mean(data.x.double().norm(dim=1), data)


STATISTICS: dict[str, Callable[[Data], float]] = {
    "pagerank_answer_share": pagerank_answer_share,
    "answer_to_prompt_mass": answer_to_prompt_mass,
    "attention_sink_mass": attention_sink_mass,
    "answer_in_degree": answer_in_degree,
    "answer_out_degree": answer_out_degree,
    "answer_attention_entropy": answer_attention_entropy,
    "answer_betweenness": answer_betweenness,
    "density": density,
    "reciprocity": reciprocity,
    "clustering": average_clustering,
    **{
        f"laplacian_eig_{rank}": partial(laplacian_eigenvalue, rank=rank)
        for rank in range(1, LAPLACIAN_TOP_K + 1)
    },
    "answer_hidden_norm": answer_hidden_norm,
    "answer_length": answer_length,
    "prompt_length": prompt_length,
}


def describe(name: str) -> str:
    """One line saying what a statistic of :data:`STATISTICS` measures."""
    function = STATISTICS[name]
    if isinstance(function, partial):
        rank = function.keywords["rank"]
        return f"Eigenvalue {rank} (largest first) of the LapEigvals attention Laplacian."
    text = re.sub(r":\w+:`", "`", " ".join(function.__doc__.split()))  # Sphinx roles → code
    return text.split(". ")[0].rstrip(".") + "."


def graph_statistics(data: Data) -> dict[str, float]:
    """Every statistic of :data:`STATISTICS` of one single-layer graph, in that order."""
    return {name: function(data) for name, function in STATISTICS.items()}
