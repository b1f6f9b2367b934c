"""One layer of one trace → a token graph (``torch_geometric.data.Data``), with tensor ops only.

The seed's double loop visits every (i, j) token pair in Python; here the whole ``[T, T]`` matrix
is thresholded at once and ``nonzero`` yields the edges in the same row-major order the loop
would have added them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from extraction.errors import UserError

HEAD_MODES = ("mean", "max", "heads")
NODE_MODES = ("all", "answer")


def validate_options(
    threshold: float, top_k: int | None, head_mode: str, self_loops: bool, nodes: str
) -> None:
    """Raise :class:`UserError` on a graph option that cannot work."""
    if not 0 < threshold <= 1:
        raise UserError(f"threshold must be in (0, 1], got {threshold}")
    if top_k is not None and top_k < 1:
        raise UserError(f"top_k must be a positive number of edges per token, got {top_k}")
    if head_mode not in HEAD_MODES:
        raise UserError(f"unknown head_mode {head_mode!r}; choose one of {', '.join(HEAD_MODES)}")
    if nodes not in NODE_MODES:
        raise UserError(f"unknown nodes {nodes!r}; choose one of {', '.join(NODE_MODES)}")
    if not isinstance(self_loops, bool):
        raise UserError(f"self_loops must be true or false, got {self_loops!r}")


def trace_to_graph(
    attention: Tensor,
    hidden: Tensor,
    n_prompt_tokens: int,
    *,
    threshold: float = 0.01,
    top_k: int | None = None,
    head_mode: str = "mean",
    self_loops: bool = True,
    nodes: str = "all",
) -> Data:
    """The graph of one layer: tokens are nodes, attention weights are edges.

    Args:
        attention: ``[heads, T, T]`` of block ``l``; ``attention[h, i, j]`` is how much token
            ``i`` attends to token ``j``.
        hidden: ``[T, hidden]`` node features, the output of the same block (hidden state
            ``l + 1``).
        n_prompt_tokens: Positions ``0 .. n_prompt_tokens - 1`` are the prompt.
        threshold: Keep an edge when its head-aggregated weight is ``>= threshold``.
        top_k: Then keep at most the ``k`` strongest incoming edges of each token (ties: the
            earlier source token wins).
        head_mode: ``mean`` (the seed's) or ``max`` over heads gives ``edge_weight [E]``;
            ``heads`` keeps every head in ``edge_attr [E, heads]`` and applies the threshold and
            top-k to the mean.
        self_loops: Keep the ``i → i`` edges.
        nodes: ``all`` tokens (prompt + answer) or only the ``answer`` tokens, renumbered from 0.

    Returns:
        ``Data`` with ``x [N, hidden]`` float32, ``edge_index [2, E]`` (row 0 the attended token
        ``j``, row 1 the attending token ``i``: the seed's ``G.add_edge(j, i)``), ``edge_weight``
        or ``edge_attr``, ``is_answer`` bool ``[N]`` and ``position`` float ``[N]`` (token index
        over ``T - 1``, so in ``[0, 1]`` and measured in the full sequence).
    """
    validate_options(threshold, top_k, head_mode, self_loops, nodes)
    seq_len = attention.shape[-1]
    if hidden.shape[0] != seq_len:
        raise ValueError(f"{hidden.shape[0]} hidden-state rows for {seq_len} attention positions")
    start = n_prompt_tokens if nodes == "answer" else 0
    if start:
        attention, hidden = attention[:, start:, start:], hidden[start:]
    attn = attention.float()
    score = attn.amax(dim=0) if head_mode == "max" else attn.mean(dim=0)

    keep = score >= threshold
    if not self_loops:
        keep.fill_diagonal_(False)
    if top_k is not None and top_k < keep.shape[1]:
        ranked = score.masked_fill(~keep, float("-inf"))
        best = torch.sort(ranked, dim=1, descending=True, stable=True).indices[:, :top_k]
        keep &= torch.zeros_like(keep).scatter_(1, best, True)
    target, source = keep.nonzero(as_tuple=True)

    token = torch.arange(start, seq_len, dtype=torch.float32)
    data = Data(
        x=hidden.float(),
        edge_index=torch.stack([source, target]),
        is_answer=token >= n_prompt_tokens,
        position=token / max(seq_len - 1, 1),
    )
    if head_mode == "heads":
        data.edge_attr = attn[:, target, source].T.contiguous()
    else:
        data.edge_weight = score[target, source]
    return data


def edge_weights(data: Data) -> Tensor:
    """``[E]`` one weight per edge: ``edge_weight``, or the head mean of ``edge_attr``."""
    if data.edge_weight is not None:
        return data.edge_weight
    return data.edge_attr.mean(dim=-1)


def stack_layers(graphs: list[Data]) -> Data:
    """The disjoint union of one trace's per-layer graphs, in order.

    ``node_layer [N_total]`` is each node's position in the list and ``num_graph_layers`` its
    length, so after batching ``batch * num_graph_layers + node_layer`` numbers the
    (trace, layer) graphs ``0 .. B * L - 1`` in trace-major order.
    """
    union = Batch.from_data_list(graphs)
    data = Data(**{key: union[key] for key in graphs[0].keys()})  # noqa: SIM118 (Data has no iter)
    data.node_layer = union.batch
    data.num_graph_layers = len(graphs)
    return data
