"""Layers of traces → token graphs (PyG ``Data`` or ``Batch``), with array ops only.

The seed's double loop visits every (i, j) token pair in Python; here the ``[T, T]`` matrices of
many traces are laid end to end, aggregated over heads, thresholded and ``nonzero``-ed at once,
which yields the edges of every graph in the same row-major order the loop would have added them.
One trace is a batch of one: :func:`trace_to_graph` is :func:`traces_to_graphs` of a list of one,
and :func:`traces_to_batch` gives them as the PyG ``Batch`` a GNN consumes. CPU tensors in (as
the trace store gives them); the float work is torch, the index bookkeeping numpy. Graphs and
batches come from PyG's public constructors (``Data(...)``, ``Batch.from_data_list``): filling
PyG's internals directly made no measurable difference to a dataset build (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from graphs.spec import GraphSpec

DEFAULT_SPEC = GraphSpec()


def trace_to_graph(
    attention: Tensor,
    hidden: Tensor | None,
    n_prompt_tokens: int,
    spec: GraphSpec = DEFAULT_SPEC,
) -> Data:
    """The graph of one layer: tokens are nodes, attention weights are edges.

    Args:
        attention: ``[heads, T, T]`` of block ``l``; ``attention[h, i, j]`` is how much token
            ``i`` attends to token ``j``.
        hidden: ``[T, hidden]`` node features, the output of the same block (hidden state
            ``l + 1``); may be None with ``node_features="attention_diagonal"``.
        n_prompt_tokens: Positions ``0 .. n_prompt_tokens - 1`` are the prompt.
        spec: The edge and node rules (:class:`graphs.GraphSpec`; its layer fields are not used
            here: the tensors given are the layer). ``threshold``: keep an edge when its
            head-aggregated weight is ``>= threshold``; ``top_k``: then keep at most the ``k``
            strongest incoming edges of each token (ties: the earlier source token wins);
            ``head_mode``: ``mean`` (the seed's) or ``max`` over heads gives ``edge_weight
            [E]``, ``heads`` keeps every head in ``edge_attr [E, heads]`` and applies the
            threshold and top-k to the mean (float32, summed head by head in order, like the
            seed's ``numpy`` ``attention.mean(axis=0)``, bit for bit), ``any`` keeps an edge
            when any head passes (``attn[h, i, j] >= threshold`` and, with ``top_k``, ``j``
            among the ``k`` strongest of row ``i`` of that head) with every head's exact value
            in ``edge_attr [E, heads]`` in the attention's own dtype; ``self_loops``: keep the
            ``i → i`` edges; ``nodes``: ``all`` tokens or only the ``answer`` tokens, renumbered
            from 0; ``prompt_edges``: keep the edges between two prompt tokens;
            ``node_features``: ``x`` is the ``hidden`` state, the ``attention_diagonal`` (each
            head's ``attn[h, i, i]``, ``[N, heads]``) or ``both`` concatenated (hidden first).

    Returns:
        ``Data`` with ``x [N, features]`` float32, ``edge_index [2, E]`` (row 0 the attended token
        ``j``, row 1 the attending token ``i``: the seed's ``G.add_edge(j, i)``; sorted by ``i``,
        then ``j``), ``edge_weight`` or ``edge_attr``, ``is_answer`` bool ``[N]`` and
        ``position`` float ``[N]`` (token index over ``T - 1``, so in ``[0, 1]`` and measured in
        the full sequence).
    """
    return traces_to_graphs([attention], [hidden], [n_prompt_tokens], spec)[0]


def traces_to_graphs(
    attentions: Sequence[Tensor],
    hiddens: Sequence[Tensor | None],
    n_prompt_tokens: Sequence[int],
    spec: GraphSpec = DEFAULT_SPEC,
) -> list[Data]:
    """:func:`trace_to_graph` of each trace (the same layer of several traces, any lengths, the
    same number of heads), built in one pass: a few dozen array ops for the whole list instead of
    a dozen per trace. ``x`` is each trace's own float32 copy (the given tensor when it is
    float32 already); the other tensors are views of tensors shared by all the graphs (as PyG's
    own ``Batch.to_data_list`` gives them): ``clone()`` a graph before saving it on its own, or
    ``torch.save`` writes the whole shared storage.
    """
    graphs = _build(attentions, hiddens, n_prompt_tokens, spec)
    return [] if graphs is None else _data_list(graphs)


def traces_to_batch(
    attentions: Sequence[Tensor],
    hiddens: Sequence[Tensor | None],
    n_prompt_tokens: Sequence[int],
    spec: GraphSpec = DEFAULT_SPEC,
) -> Batch:
    """The graphs of :func:`traces_to_graphs` as one PyG ``Batch`` (what a GNN consumes):
    ``Batch.from_data_list(traces_to_graphs(...))``."""
    graphs = _build(attentions, hiddens, n_prompt_tokens, spec)
    if graphs is None:
        raise ValueError("no traces to batch")
    return Batch.from_data_list(_data_list(graphs))


@dataclass
class _Graphs:
    """Graphs laid end to end: nodes graph by graph, then edges graph by graph, each graph's
    edges sorted by (target, source)."""

    features: list[Tensor]  # each graph's node features (hidden states as given), its nodes
    is_answer: Tensor  # [sum N] bool
    position: Tensor  # [sum N] float32
    target: Tensor  # [sum E] attending node, numbered over all graphs
    source: Tensor  # [sum E] attended node, numbered within its graph
    source_shift: Tensor  # [sum E] the first node of the edge's graph
    weight_key: str  # "edge_weight" or "edge_attr"
    weight: Tensor  # [sum E] or [sum E, heads] float32
    num_nodes: list[int]
    num_edges: list[int]


def _data_list(graphs: _Graphs) -> list[Data]:
    """One ``Data`` per graph, its tensors views of the concatenated ones (``x`` each trace's own
    float32 copy)."""
    local_target = graphs.target - graphs.source_shift
    edge_index = torch.stack([graphs.source, local_target])
    columns = {
        "x": [features.float() for features in graphs.features],
        "edge_index": edge_index.split(graphs.num_edges, dim=1),
        "is_answer": graphs.is_answer.split(graphs.num_nodes),
        "position": graphs.position.split(graphs.num_nodes),
        graphs.weight_key: graphs.weight.split(graphs.num_edges),
    }
    return [
        Data(**dict(zip(columns, values, strict=True)))
        for values in zip(*columns.values(), strict=True)
    ]


def _build(
    attentions: Sequence[Tensor],
    hiddens: Sequence[Tensor | None],
    n_prompt_tokens: Sequence[int],
    spec: GraphSpec,
) -> _Graphs | None:
    """The one implementation behind :func:`trace_to_graph`, :func:`traces_to_graphs` and
    :func:`traces_to_batch` (None for no traces), in four named steps: choose the nodes
    (:func:`_select_nodes`), lay the traces' rows end to end (:func:`_lay_out`), apply the edge
    rules (:func:`_edge_rules`), weigh the kept edges (:func:`_edge_weights`).

    Each trace's (node-selected) ``[heads, N, N]`` attention is flattened to ``[heads, N * N]``
    and the traces are concatenated along that axis: the rows of all the graphs' matrices, one
    after the other (row ``r`` holds the attention of node ``r`` of the batch). The head
    aggregation (in groups of traces), the threshold and ``flatnonzero`` (numpy, several times
    faster than torch's ``nonzero`` on CPU) then run once for all traces, and the flat indices,
    in increasing order, are the edges graph by graph, each graph's in the seed loop's
    row-major (target, then source) order. A lookup table from flat index to row gives the
    target; the source is the offset in the row. The bookkeeping is numpy: its small ops cost a
    third of torch's.
    """
    if not len(attentions) == len(hiddens) == len(n_prompt_tokens):
        raise ValueError(
            f"{len(attentions)} attentions, {len(hiddens)} hidden states and "
            f"{len(n_prompt_tokens)} prompt lengths: give one of each per trace"
        )
    if not attentions:
        return None
    nodes = _select_nodes(attentions, hiddens, n_prompt_tokens, spec)
    rows = _lay_out(nodes, n_prompt_tokens)
    squares = [attention.reshape(attention.shape[0], -1) for attention in nodes.attentions]
    score, flat, target = _edge_rules(nodes, squares, rows, spec)
    weight_key, weight = _edge_weights(squares, score, flat, spec.head_mode)
    position = rows.token.astype(np.float32) / np.repeat(
        np.float32(nodes.denominators), rows.counts
    )
    return _Graphs(
        nodes.features,
        torch.from_numpy(rows.is_answer),
        torch.from_numpy(position),
        torch.from_numpy(target),
        torch.from_numpy(flat - rows.row_start.take(target)),
        torch.from_numpy(rows.graph_start.take(target)),
        weight_key,
        weight,
        nodes.num_nodes,
        np.diff(np.searchsorted(target, rows.first_node)).tolist(),
    )


@dataclass
class _Nodes:
    """Each trace's chosen nodes: its ``[heads, N, N]`` attention among them, their features,
    ``N``, the first chosen token and the position denominator."""

    attentions: list[Tensor] = field(default_factory=list)
    features: list[Tensor] = field(default_factory=list)
    num_nodes: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    denominators: list[int] = field(default_factory=list)


def _select_nodes(
    attentions: Sequence[Tensor],
    hiddens: Sequence[Tensor | None],
    n_prompt_tokens: Sequence[int],
    spec: GraphSpec,
) -> _Nodes:
    """Every token, or the answer's only (``spec.nodes``); shapes checked."""
    n_heads = attentions[0].shape[0]
    nodes = _Nodes()
    for attention, hidden, n_prompt in zip(attentions, hiddens, n_prompt_tokens, strict=True):
        seq_len = attention.shape[-1]
        if attention.shape != (n_heads, seq_len, seq_len):
            raise ValueError(
                f"attention of shape {tuple(attention.shape)}; expected [{n_heads}, T, T] like "
                "the first trace's"
            )
        if hidden is not None and hidden.shape[0] != seq_len:
            raise ValueError(
                f"{hidden.shape[0]} hidden-state rows for {seq_len} attention positions"
            )
        start = min(n_prompt, seq_len) if spec.nodes == "answer" else 0
        if start:
            attention = attention[:, start:, start:]
            hidden = None if hidden is None else hidden[start:]
        nodes.attentions.append(attention)
        nodes.features.append(_node_features(attention, hidden, spec.node_features))
        nodes.starts.append(start)
        nodes.num_nodes.append(seq_len - start)
        nodes.denominators.append(max(seq_len - 1, 1))
    return nodes


@dataclass
class _Rows:
    """Per node of the batch (= per matrix row): its graph's first node, the row's width, where
    the row starts in the concatenation, its token in the full sequence, whether that token is
    the answer's; and per graph its first node (``len + 1`` entries)."""

    counts: np.ndarray
    first_node: np.ndarray
    graph_start: np.ndarray
    width: np.ndarray
    row_start: np.ndarray
    token: np.ndarray
    is_answer: np.ndarray

    @property
    def total(self) -> int:
        return len(self.token)

    def source_node(self, flat: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The attended node (numbered over all graphs) of each flat index."""
        return flat - self.row_start.take(target) + self.graph_start.take(target)


def _lay_out(nodes: _Nodes, n_prompt_tokens: Sequence[int]) -> _Rows:
    counts = np.array(nodes.num_nodes)
    node_graph = np.repeat(np.arange(len(counts)), counts)
    first_node = np.array([0, *accumulate(nodes.num_nodes)])
    graph_start = first_node[:-1].take(node_graph)
    width = counts.take(node_graph)
    token = np.arange(int(counts.sum())) - graph_start + np.repeat(nodes.starts, counts)
    return _Rows(
        counts=counts,
        first_node=first_node,
        graph_start=graph_start,
        width=width,
        row_start=np.cumsum(width) - width,
        token=token,
        is_answer=token >= np.repeat(n_prompt_tokens, counts),
    )


def _edge_rules(
    nodes: _Nodes, squares: list[Tensor], rows: _Rows, spec: GraphSpec
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The edges every rule of ``spec`` keeps: the head score of every position (None for
    ``head_mode: any`` with ``top_k``), and the kept edges' flat indices and targets, in
    row-major order. An edge rule on tokens goes here (docs/ARCHITECTURE.md's worked example)."""
    threshold, top_k, head_mode = spec.threshold, spec.top_k, spec.head_mode
    if head_mode == "any" and top_k is not None:
        score, keep = None, _any_head_top_k(nodes.attentions, threshold, top_k, spec.self_loops)
    else:
        score = _aggregate_heads(squares, "max" if head_mode == "any" else head_mode)
        keep = score >= np.float32(threshold)  # in float32, like the seed's numpy comparison
        if not spec.self_loops:
            keep[rows.row_start + np.arange(rows.total) - rows.graph_start] = False
    flat = np.flatnonzero(keep)
    target = np.repeat(np.arange(rows.total), rows.width).take(flat)
    if not spec.prompt_edges:
        source = rows.source_node(flat, target)
        touches_answer = rows.is_answer.take(target) | rows.is_answer.take(source)
        flat, target = flat[touches_answer], target[touches_answer]
    if top_k is not None and score is not None:
        # Rank each edge among its target's edges, strongest first, ties to the earlier source:
        # a stable sort by (target, -weight); targets already ascend in `flat`.
        order = np.lexsort((-score.take(flat), target))
        rank = np.arange(len(target)) - np.searchsorted(target, target)
        kept = np.sort(order[rank < top_k])  # back to row-major order
        flat, target = flat.take(kept), target.take(kept)
    return score, flat, target


def _edge_weights(
    squares: list[Tensor], score: np.ndarray | None, flat: np.ndarray, head_mode: str
) -> tuple[str, Tensor]:
    """``edge_weight`` (the head score) or ``edge_attr`` (every head) of the kept edges."""
    if head_mode not in ("heads", "any"):
        return "edge_weight", torch.from_numpy(score.take(flat))
    heads = squares[0] if len(squares) == 1 else torch.cat(squares, dim=1)
    weight = heads.index_select(1, torch.from_numpy(flat)).T.contiguous()
    return "edge_attr", weight.float() if head_mode == "heads" else weight


def _node_features(attention: Tensor, hidden: Tensor | None, node_features: str) -> Tensor:
    """``[N, features]``: the hidden state (as given), each head's self-attention
    ``attn[h, i, i]`` (float32), or both concatenated."""
    if node_features == "attention_diagonal":
        return attention.diagonal(dim1=1, dim2=2).T.float()
    if hidden is None:
        raise ValueError(f"node_features={node_features!r} needs the hidden states")
    if node_features == "hidden":
        return hidden
    return torch.cat([hidden.float(), attention.diagonal(dim1=1, dim2=2).T.float()], dim=1)


def _any_head_top_k(
    attentions: list[Tensor], threshold: float, top_k: int, self_loops: bool
) -> np.ndarray:
    """``[sum N * N]`` bool: ``(i, j)`` is kept by at least one head ``h``, i.e.
    ``attn[h, i, j] >= threshold`` and ``j`` is among the ``top_k`` strongest of row ``i`` of
    that head (ties: the earlier source wins, by a stable sort). Trace by trace: the rows of a
    trace have the same width, so the ranking is one sort over ``[heads, N, N]``."""
    masks = []
    for attention in attentions:
        values = attention.to(torch.float32, copy=True)  # the diagonal may be overwritten
        if not self_loops:
            values.diagonal(dim1=1, dim2=2).fill_(-1.0)
        order = values.argsort(dim=-1, descending=True, stable=True)[..., :top_k]
        ranked = torch.zeros(values.shape, dtype=torch.bool).scatter_(-1, order, True)
        masks.append(((values >= threshold) & ranked).any(dim=0).reshape(-1))
    return torch.cat(masks).numpy()


# Up to this many elements an elementwise torch op runs on the calling thread (torch's parallel
# grain is 32768): on a shared CPU an OpenMP region can stall for milliseconds on a busy core, so
# the head aggregation keeps its ops under it.
SERIAL_ELEMENTS = 32_000


def _aggregate_heads(squares: list[Tensor], head_mode: str) -> np.ndarray:
    """The head mean (or max) of each trace's ``[heads, N * N]``, concatenated: ``[sum N * N]``
    float32. Consecutive small traces are concatenated (up to ``SERIAL_ELEMENTS`` token pairs)
    and aggregated together."""
    sizes = [square.shape[1] for square in squares]
    score = np.empty(sum(sizes), dtype=np.float32)
    begin = first = 0
    while first < len(squares):
        last, pairs = first + 1, sizes[first]
        while last < len(squares) and pairs + sizes[last] <= SERIAL_ELEMENTS:
            pairs += sizes[last]
            last += 1
        group = squares[first:last]
        heads = group[0] if len(group) == 1 else torch.cat(group, dim=1)
        out = score[begin : begin + pairs]
        if head_mode == "max":
            torch.from_numpy(out).copy_(heads.amax(dim=0))
        else:
            _head_mean(heads, out)
        first, begin = last, begin + pairs
    return score


def _head_mean(heads: Tensor, out: np.ndarray) -> None:
    """Float32 mean over dim 0 into ``out``, bit-identical to the seed's numpy
    ``attention.mean(axis=0)`` of the float32 array for any number of heads and shape: numpy adds
    the heads one after the other and then divides, while ``torch.mean``/``sum`` add in blocks
    whose order depends on the shape and often differ in the last bit. A small input takes
    numpy's mean itself (two calls); a larger one adds head by head in torch, which converts each
    half-precision head on the way instead of making a float32 copy of all of them.
    """
    if heads.numel() <= SERIAL_ELEMENTS:
        np.mean(heads.float().numpy(), axis=0, out=out)
        return
    total = torch.from_numpy(out)
    total.copy_(heads[0])
    for head in range(1, len(heads)):
        total.add_(heads[head])
    total.div_(len(heads))


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
