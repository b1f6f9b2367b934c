"""MPNNClassifier: learns a signal planted in the edge features only; without them it cannot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import seed_everything
from torch_geometric.data import Batch, Data

from tests.helpers import fit_and_test
from training.models import EdgeConditionedConv, MPNNClassifier, lookback_ratios

FEATURES, EDGE_FEATURES, SIGNAL = 12, 6, 2

pytestmark = pytest.mark.usefixtures("one_thread")


def edge_signal_graph(n: int, label: int, generator: torch.Generator) -> Data:
    """Every token attends to every earlier one (the same structure for both labels), node
    features are noise; only edge feature ``SIGNAL`` on the edges into answer tokens differs:
    drawn from [0, 0.2) for label 0 and [0.2, 0.4) for label 1."""
    targets, sources = torch.tril_indices(n, n)
    is_answer = torch.arange(n) >= n // 2
    edge_attr = torch.rand(len(targets), EDGE_FEATURES, generator=generator) * 0.4
    into_answer = is_answer[targets]
    signal = torch.rand(int(into_answer.sum()), generator=generator) * 0.2 + 0.2 * label
    edge_attr[into_answer, SIGNAL] = signal
    return Data(
        x=torch.randn(n, FEATURES, generator=generator),
        edge_index=torch.stack([sources, targets]),
        edge_attr=edge_attr.half(),
        is_answer=is_answer,
        position=torch.arange(n) / (n - 1),
        y=torch.tensor([label]),
    )


def edge_signal(count: int, seed: int) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(8, 14, (count,), generator=generator).tolist()
    return [edge_signal_graph(n, i % 2, generator) for i, n in enumerate(sizes)]


def without_edge_features(graphs: list[Data]) -> list[Data]:
    """The same graphs with every edge feature zero: node features and structure only."""
    out = []
    for graph in graphs:
        graph = graph.clone()
        graph.edge_attr = torch.zeros_like(graph.edge_attr)
        out.append(graph)
    return out


def mpnn(**options) -> MPNNClassifier:
    seed_everything(0)
    return MPNNClassifier(
        in_channels=FEATURES,
        edge_dim=EDGE_FEATURES,
        hidden_channels=32,
        pos_weight=None,
        lr=5e-3,
        **options,
    )


def test_mpnn_learns_a_signal_planted_in_the_edge_features():
    splits = edge_signal(160, 1), edge_signal(40, 2), edge_signal(60, 3)
    metrics = fit_and_test(mpnn(), *splits)
    assert metrics["test/auroc"] >= 0.95, metrics


def test_log_scaled_standardised_edge_features_keep_the_signal():
    splits = edge_signal(160, 1), edge_signal(40, 2), edge_signal(60, 3)
    model = mpnn(edge_log=True, edge_norm=True)
    edges = torch.tensor([[0.0, 1.0], [0.5, 0.001]])
    scaled = model.edge_encoder[0](edges)
    assert torch.allclose(scaled, torch.log(edges + 1e-3)) and scaled[0, 0] < scaled[1, 1]
    metrics = fit_and_test(model, *splits)
    assert metrics["test/auroc"] >= 0.95, metrics


def test_lookback_readout_is_lookback_lens_ratio_over_the_edges():
    """Prompt token 0, answer tokens 1 and 2; two edge features (heads)."""
    edge_index = torch.tensor([[0, 1, 0, 1, 2], [1, 1, 2, 2, 2]])
    edge_attr = torch.tensor([[0.6, 0.1], [0.4, 0.9], [0.2, 0.5], [0.3, 0.25], [0.5, 0.25]])
    graph = Data(
        x=torch.randn(3, FEATURES),
        edge_index=edge_index,
        edge_attr=edge_attr.half(),
        is_answer=torch.tensor([False, True, True]),
        position=torch.tensor([0.0, 0.5, 1.0]),
        y=torch.tensor([1]),
    )
    batch = Batch.from_data_list([graph, graph])
    expected = torch.tensor([(0.6 + 0.2) / 2, (0.1 + 0.5) / 2])
    assert torch.allclose(lookback_ratios(batch), expected.expand(2, 2), atol=1e-3)
    model = MPNNClassifier(in_channels=FEATURES, edge_dim=2, lookback_readout=True).eval()
    assert model(batch).shape == (2,)


def test_node_features_alone_cannot_see_it():
    splits = [
        without_edge_features(graphs)
        for graphs in (edge_signal(160, 1), edge_signal(40, 2), edge_signal(60, 3))
    ]
    metrics = fit_and_test(mpnn(), *splits)
    assert metrics["test/auroc"] <= 0.7, metrics


def test_mpnn_reads_scalar_edge_weights_and_pools_answer_tokens():
    torch.manual_seed(0)
    graphs = edge_signal(4, 0)
    for graph in graphs:
        graph.edge_weight = graph.edge_attr[:, 0].float()
        del graph.edge_attr
    model = MPNNClassifier(
        in_channels=FEATURES, edge_dim=None, num_layers=1, pooling="attention", edge_norm=True
    )
    no_messages = MPNNClassifier(in_channels=FEATURES, edge_dim=None, num_layers=0)
    model.eval(), no_messages.eval()
    batch = Batch.from_data_list(graphs)
    before = model(batch), no_messages(batch)
    assert before[0].shape == (4,)
    # A prompt token's state reaches the answer-token readout only through messages (a new
    # direction, not a shift: the input LayerNorm removes shifts).
    batch.x[0] = torch.randn(FEATURES, generator=torch.Generator().manual_seed(1)) * 10
    assert torch.equal(no_messages(batch), before[1])
    assert model(batch)[0] != before[0][0] and torch.equal(model(batch)[1:], before[0][1:])


@pytest.mark.parametrize("aggr", ["mean", "sum"])
def test_conv_message_is_an_mlp_of_sender_and_edge(aggr):
    """The factored computation equals aggregating ``W_2 ReLU(W_1 [h_j, e_ij] + b_1)`` edge by
    edge (for tokens that receive messages)."""
    torch.manual_seed(0)
    conv = EdgeConditionedConv(8, 5, dropout=0.0, aggr=aggr).eval()
    h, edge_attr = torch.randn(6, 8), torch.randn(9, 5)
    edge_index = torch.tensor([[0, 1, 2, 0, 3, 4, 1, 5, 2], [1, 1, 2, 3, 3, 3, 5, 5, 5]])
    w_1 = torch.cat([conv.sender.weight, conv.edge.weight], dim=1)
    out = torch.zeros(6, 8)
    for target in edge_index[1].unique().tolist():
        edges = (edge_index[1] == target).nonzero().view(-1).tolist()
        messages = [
            conv.message_out.weight
            @ F.relu(w_1 @ torch.cat([h[edge_index[0, e]], edge_attr[e]]) + conv.sender.bias)
            for e in edges
        ]
        total = torch.stack(messages).sum(0)
        out[target] = total / len(edges) if aggr == "mean" else total
    update = F.relu(conv.update_lin(torch.cat([h, out], dim=-1)))
    expected = conv.norm(h + update)
    received = edge_index[1].unique()
    assert torch.allclose(conv(h, edge_index, edge_attr)[received], expected[received], atol=1e-5)
