"""Graph classifiers over attention graphs: GCN, GAT, GIN, GraphSAGE, a multi-layer model and an
edge-conditioned MPNN for all-layer graphs.

Every detector is: per-node LayerNorm → message passing → pooling over tokens (all, or answer
tokens only) → MLP → one logit. The ``BasicGNN`` ones differ only in the message-passing family,
i.e. in which edge information the layer can use (PyG's ``supports_edge_weight`` /
``supports_edge_attr`` of the family's model); :class:`MPNNClassifier` makes
every message an MLP of the sender and the edge's features. Loss, metrics and threshold live in
:class:`~training.module.GraphClassifier`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import (
    Aggregation,
    AttentionalAggregation,
    MaxAggregation,
    MeanAggregation,
)
from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE
from torch_geometric.nn.models.basic_gnn import BasicGNN
from torch_geometric.utils import scatter

from training.module import GraphClassifier

Family = Literal["gcn", "gat", "gin", "sage"]
Pooling = Literal["mean", "max", "attention"]

# family → PyG model; what it takes from the edges is the model's own declaration:
# ``supports_edge_weight`` a scalar per edge (GCN's normalised sum), ``supports_edge_attr`` an
# edge feature vector (GAT's attention), neither the structure only (GIN, GraphSAGE).
MODELS: dict[str, type[BasicGNN]] = {"gcn": GCN, "gat": GAT, "gin": GIN, "sage": GraphSAGE}


class GraphEncoder(nn.Module):
    """Node embeddings from one of the PyG GNN families, fed the edge data it supports.

    Hidden states of an LLM carry a few huge coordinates (attention-sink tokens reach norms
    hundreds of times the median), so a per-node LayerNorm comes first.
    ``edge_dim`` is the width of ``edge_attr`` (attention heads kept separately) or ``None`` when
    the graphs carry a scalar ``edge_weight``; GCN averages heads into one weight, GAT uses them.
    """

    def __init__(
        self,
        family: Family,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        dropout: float,
        norm: str | None,
        edge_dim: int | None,
        **gnn_kwargs,
    ) -> None:
        super().__init__()
        model = MODELS[family]
        if model.supports_edge_attr:
            gnn_kwargs["edge_dim"] = edge_dim or 1
        self.input_norm = nn.LayerNorm(in_channels)
        self.gnn = model(
            in_channels, hidden_channels, num_layers, dropout=dropout, norm=norm, **gnn_kwargs
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        edge_weight = getattr(batch, "edge_weight", None)
        edge_attr = getattr(batch, "edge_attr", None)
        kwargs = {}
        if self.gnn.supports_edge_weight:
            kwargs["edge_weight"] = edge_weight if edge_attr is None else edge_attr.mean(-1)
        elif self.gnn.supports_edge_attr:
            kwargs["edge_attr"] = edge_features(batch)
        return self.gnn(self.input_norm(batch.x), batch.edge_index, **kwargs)


def edge_features(batch: Batch) -> torch.Tensor:
    """``[E, d]`` float32 edge features: ``edge_attr`` (stored in half precision by
    ``head_mode: any``), or the scalar ``edge_weight`` as a column."""
    edge_attr = getattr(batch, "edge_attr", None)
    return edge_attr.float() if edge_attr is not None else batch.edge_weight[:, None]


def make_pooling(pooling: Pooling, channels: int) -> Aggregation:
    if pooling == "attention":
        return AttentionalAggregation(gate_nn=nn.Linear(channels, 1))
    return MeanAggregation() if pooling == "mean" else MaxAggregation()


def pool(
    aggr: Aggregation, h: torch.Tensor, index: torch.Tensor, size: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """``[size, d]``: node embeddings pooled by ``index``, over the nodes in ``mask`` only when
    given. A group with no selected node (an empty answer) pools to zeros."""
    if mask is not None:
        h, index = h[mask], index[mask]
    return aggr(h, index, dim_size=size)


def mlp_head(channels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(channels, channels), nn.ReLU(), nn.Dropout(dropout), nn.Linear(channels, 1)
    )


class GNNClassifier(GraphClassifier):
    """One layer's attention graph → GNN → pooled graph vector → logit.

    Args:
        hidden_channels: GNN and MLP width.
        num_layers: message-passing layers.
        dropout: dropout between GNN layers and in the MLP head.
        norm: a ``torch_geometric.nn.norm`` name between GNN layers (``batch_norm``,
            ``layer_norm``, ``graph_norm``) or ``None``.
        pooling: ``mean``, ``max`` or ``attention`` (a learned gate over tokens).
        answer_only: pool over the answer tokens only (the prompt still passes messages).
    """

    family: ClassVar[Family]

    def __init__(
        self,
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        norm: str | None = None,
        pooling: Pooling = "mean",
        answer_only: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        widths = self.hparams.in_channels, hidden_channels, num_layers
        layers = dropout, norm, self.hparams.edge_dim
        self.encoder = GraphEncoder(self.family, *widths, *layers, **self.gnn_kwargs())
        self.pooling = make_pooling(pooling, hidden_channels)
        self.head = mlp_head(hidden_channels, dropout)

    def gnn_kwargs(self) -> dict:
        """Family-specific arguments of the PyG model."""
        return {}

    def forward(self, batch: Batch) -> torch.Tensor:
        mask = batch.is_answer if self.hparams.answer_only else None
        pooled = pool(self.pooling, self.encoder(batch), batch.batch, batch.num_graphs, mask)
        return self.head(pooled).squeeze(-1)


class GCNClassifier(GNNClassifier):
    """GCN (Kipf & Welling) with attention weights as edge weights."""

    family = "gcn"


class GATClassifier(GNNClassifier):
    """GAT over attention graphs; the attention weights (or each head's) are GAT edge features.

    Args:
        heads: GAT attention heads per layer (``hidden_channels`` must be divisible by it).
        v2: GATv2 ("dynamic" attention) instead of the original GAT.
    """

    family = "gat"

    def __init__(self, *args, heads: int = 4, v2: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)

    def gnn_kwargs(self) -> dict:
        # Read from hparams: the encoder is built inside the parent's __init__.
        return {"heads": self.hparams.heads, "v2": self.hparams.v2}


class GINClassifier(GNNClassifier):
    """GIN: the most expressive sum-aggregation GNN; uses the edge structure, not the weights."""

    family = "gin"


class SAGEClassifier(GNNClassifier):
    """GraphSAGE (mean aggregation); uses the edge structure, not the weights."""

    family = "sage"


class MultiLayerClassifier(GraphClassifier):
    """Several layers of one trace: a shared GNN embeds every per-layer graph, pooling gives one
    vector per (trace, layer), and a sequence model reads them in layer order.

    Expects the multi-layer graphs of the dataset (``layers=[...]``): the disjoint union of the
    per-layer graphs with ``node_layer`` (position in ``layers``) and ``num_graph_layers``.

    Args:
        conv: message-passing family of the shared per-layer GNN.
        heads: GAT heads (``conv: gat`` only).
        sequence: ``gru`` (reads layers in order) or ``transformer`` (attends across layers,
            with a learned embedding of the layer's position).
        sequence_layers: layers of the sequence model.
        max_graph_layers: most layers per trace the transformer's position embedding covers.
        Other arguments as in :class:`GNNClassifier`.
    """

    def __init__(
        self,
        conv: Family = "gcn",
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        norm: str | None = None,
        heads: int = 4,
        pooling: Pooling = "mean",
        answer_only: bool = False,
        sequence: Literal["gru", "transformer"] = "gru",
        sequence_layers: int = 1,
        max_graph_layers: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        gnn_kwargs = {"heads": heads, "v2": True} if conv == "gat" else {}
        widths = self.hparams.in_channels, hidden_channels, num_layers
        self.encoder = GraphEncoder(
            conv, *widths, dropout, norm, self.hparams.edge_dim, **gnn_kwargs
        )
        self.pooling = make_pooling(pooling, hidden_channels)
        if sequence == "gru":
            self.sequence = nn.GRU(
                hidden_channels, hidden_channels, sequence_layers, batch_first=True
            )
        else:
            self.layer_embedding = nn.Embedding(max_graph_layers, hidden_channels)
            block = nn.TransformerEncoderLayer(
                hidden_channels,
                nhead=4,
                dim_feedforward=2 * hidden_channels,
                dropout=dropout,
                batch_first=True,
            )
            self.sequence = nn.TransformerEncoder(
                block, sequence_layers, enable_nested_tensor=False
            )
        self.head = mlp_head(hidden_channels, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        n_layers = int(batch.num_graph_layers[0])
        key = batch.batch * n_layers + batch.node_layer
        mask = batch.is_answer if self.hparams.answer_only else None
        size = batch.num_graphs * n_layers
        per_layer = pool(self.pooling, self.encoder(batch), key, size, mask)
        per_layer = per_layer.view(batch.num_graphs, n_layers, -1)
        if self.hparams.sequence == "gru":
            _, last = self.sequence(per_layer)
            summary = last[-1]
        else:
            positions = torch.arange(n_layers, device=per_layer.device)
            summary = self.sequence(per_layer + self.layer_embedding(positions)).mean(1)
        return self.head(summary).squeeze(-1)


class EdgeConditionedConv(MessagePassing):
    """``h_i ← LayerNorm(h_i + Dropout(ReLU(U [h_i, ⊕_j m_ij])))`` with the message
    ``m_ij = W_2 ReLU(W_1 [h_j, e_ij] + b_1)``, an MLP of the sender's state and the edge's
    features (all heads of all layers on an all-layer graph), and a residual update.

    Computed as ``W_2 ⊕_j ReLU(W_x h_j + W_e e_ij + b_1)``: ``W_1 = [W_x, W_e]`` is split so that
    ``W_x h`` is one product per token instead of one per edge, and since ``W_2`` is linear
    (no bias) and ``⊕`` a sum or mean, it goes after the aggregation: the same value with a
    per-edge cost of one addition (tokens receive tens to hundreds of edges here). None of
    PyG's edge-feature layers fits: ``GINEConv`` adds a projection of ``e_ij`` to ``h_j`` before
    one nonlinearity, ``NNConv`` makes a ``d × d`` matrix per edge, ``GeneralConv`` adds
    ``e_ij`` linearly.
    """

    def __init__(self, channels: int, edge_channels: int, dropout: float, aggr: str) -> None:
        super().__init__(aggr=aggr)
        self.sender = nn.Linear(channels, channels)
        self.edge = nn.Linear(edge_channels, channels, bias=False)
        self.message_out = nn.Linear(channels, channels, bias=False)
        self.update_lin = nn.Linear(2 * channels, channels)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(channels)

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.propagate(edge_index, x=self.sender(h), edge_attr=self.edge(edge_attr))
        update = F.relu(self.update_lin(torch.cat([h, self.message_out(hidden)], dim=-1)))
        return self.norm(h + self.dropout(update))

    def message(self, x_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return F.relu(x_j + edge_attr)


# Added to attention values before their log: below the 0.01 an edge needs in one head, above
# float16's resolution near 0.
EDGE_LOG_EPS = 1e-3


def lookback_ratios(batch: Batch) -> torch.Tensor:
    """``[num_graphs, d]``: for each edge feature (a (layer, head) on an all-layer graph), the
    share of an answer token's kept incoming attention that comes from prompt tokens, averaged
    over the graph's answer tokens: Lookback Lens's ratio (Chuang et al., 2024) read off the
    graph's edges (edges below the graph's threshold are not there to count)."""
    values = edge_features(batch)
    senders, receivers = batch.edge_index
    into_answer = batch.is_answer[receivers]
    from_prompt = into_answer & ~batch.is_answer[senders]
    size = batch.num_nodes
    prompt = scatter(values * from_prompt[:, None], receivers, 0, dim_size=size, reduce="sum")
    total = scatter(values * into_answer[:, None], receivers, 0, dim_size=size, reduce="sum")
    ratio = prompt / total.clamp_min(1e-6)
    answer = batch.is_answer
    return scatter(ratio[answer], batch.batch[answer], 0, dim_size=batch.num_graphs, reduce="mean")


class LogScale(nn.Module):
    """``log(x + EDGE_LOG_EPS)`` of non-negative features (attention weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x.clamp_min(0) + EDGE_LOG_EPS)


class MPNNClassifier(GraphClassifier):
    """Edge-conditioned message passing over all-layer attention graphs (CHARM, Frasca et al.,
    ICLR 2026): node features (the attention diagonal of every head and layer, a hidden state,
    or both) plus the answer flag and relative position are embedded, edge features (``L * H``
    attention values) are embedded, ``num_layers`` :class:`EdgeConditionedConv` update the
    tokens, and the answer tokens are pooled into one logit.

    Expects the dataset's ``combine: union, head_mode: any`` graphs; any graph works (a scalar
    ``edge_weight`` is a one-wide edge feature).

    Args:
        hidden_channels: width of node and edge embeddings and messages.
        num_layers: message-passing layers.
        dropout: dropout of the updates, the embeddings and the MLP head.
        aggr: how messages are combined: ``mean`` or ``sum``.
        pooling: ``mean``, ``max`` or ``attention`` over the pooled tokens.
        answer_only: pool over the answer tokens only (the prompt still sends messages).
        edge_norm: standardise each edge feature over the batch (``BatchNorm1d``) before the
            edge embedding: attention values are mostly near 0 with a few near 1.
        edge_log: read each edge feature as ``log(value + EDGE_LOG_EPS)`` (before
            ``edge_norm``): ratios of attention, what Lookback Lens and LapEigvals build on,
            become differences, and the many small values are told apart.
        lookback_readout: add the graph's Lookback Lens ratios (:func:`lookback_ratios`,
            standardised and projected) to the pooled tokens before the head: a typed sum
            aggregation of the raw edge features that a mean of messages cannot form.
    """

    def __init__(
        self,
        hidden_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        aggr: Literal["mean", "sum"] = "mean",
        pooling: Pooling = "mean",
        answer_only: bool = True,
        edge_norm: bool = False,
        edge_log: bool = False,
        lookback_readout: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        in_channels = self.hparams.in_channels
        self.input_norm = nn.LayerNorm(in_channels)
        self.node_encoder = nn.Sequential(
            nn.Linear(in_channels + 2, hidden_channels), nn.ReLU(), nn.Dropout(dropout)
        )
        edge_width = self.hparams.edge_dim or 1
        self.edge_encoder = nn.Sequential(
            LogScale() if edge_log else nn.Identity(),
            nn.BatchNorm1d(edge_width) if edge_norm else nn.Identity(),
            nn.Linear(edge_width, hidden_channels),
            nn.ReLU(),
        )
        self.convs = nn.ModuleList(
            EdgeConditionedConv(hidden_channels, hidden_channels, dropout, aggr)
            for _ in range(num_layers)
        )
        self.pooling = make_pooling(pooling, hidden_channels)
        self.lookback = (
            nn.Sequential(nn.BatchNorm1d(edge_width), nn.Linear(edge_width, hidden_channels))
            if lookback_readout
            else None
        )
        self.head = mlp_head(hidden_channels, dropout)

    def forward(self, batch: Batch) -> torch.Tensor:
        flags = torch.stack([batch.is_answer.float(), batch.position.float()], dim=-1)
        h = self.node_encoder(torch.cat([self.input_norm(batch.x), flags], dim=-1))
        edges = self.edge_encoder(edge_features(batch))
        for conv in self.convs:
            h = conv(h, batch.edge_index, edges)
        mask = batch.is_answer if self.hparams.answer_only else None
        pooled = pool(self.pooling, h, batch.batch, batch.num_graphs, mask)
        if self.lookback is not None:
            pooled = pooled + self.lookback(lookback_ratios(batch))
        return self.head(pooled).squeeze(-1)
