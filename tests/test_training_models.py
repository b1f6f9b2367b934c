"""Training, fast: metrics, threshold choice, and models learning a planted structural signal."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import seed_everything
from torch_geometric.data import Batch, Data

from tests.helpers import fit_and_test
from training.metrics import choose_threshold, evaluate
from training.models import (
    GATClassifier,
    GCNClassifier,
    GINClassifier,
    MultiLayerClassifier,
    SAGEClassifier,
)

FEATURES = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def attention_graph(n: int, label: int, generator: torch.Generator) -> Data:
    """A causal "attention" graph over ``n`` tokens with random features: label 0 is local
    attention (each token attends to itself and the previous token), label 1 is diffuse
    attention (each token attends to every earlier token). Only the structure tells them apart;
    weights are uniform over each token's sources, as attention rows sum to 1."""
    targets, sources = torch.tril_indices(n, n)  # every (i, j) with j <= i
    if not label:
        local = targets - sources <= 1
        targets, sources = targets[local], sources[local]
    in_degree = torch.bincount(targets, minlength=n).float()
    return Data(
        x=torch.randn(n, FEATURES, generator=generator),
        edge_index=torch.stack([sources, targets]),
        edge_weight=1.0 / in_degree[targets],
        y=torch.tensor([label]),
        is_answer=torch.arange(n) >= n // 2,
        question_id=f"q{label}-{n}-{int(torch.randint(10**6, (1,), generator=generator))}",
    )


def planted(count: int, seed: int) -> list[Data]:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(8, 16, (count,), generator=generator).tolist()
    return [attention_graph(n, i % 2, generator) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("model_class", [GCNClassifier, GATClassifier])
def test_model_learns_planted_structure(model_class):
    seed_everything(0)
    model = model_class(
        in_channels=FEATURES, hidden_channels=32, pooling="max", pos_weight=None, lr=5e-3
    )
    metrics = fit_and_test(model, planted(160, 1), planted(40, 2), planted(60, 3))
    assert metrics["test/auroc"] >= 0.95, metrics
    assert metrics["test/accuracy"] >= 0.85, metrics
    assert 0.0 < float(model.threshold) < 1.0


@pytest.mark.parametrize(
    "model",
    [
        GINClassifier(in_channels=FEATURES, pooling="attention", answer_only=True),
        SAGEClassifier(in_channels=FEATURES, pooling="max", norm="batch_norm"),
        GATClassifier(in_channels=FEATURES, edge_dim=3, heads=2),
    ],
    ids=["gin-attention-answer", "sage-max", "gat-edge-attr"],
)
def test_models_give_one_logit_per_graph(model):
    graphs = planted(5, 0)
    for graph in graphs:
        graph.edge_attr = graph.edge_weight[:, None].repeat(1, 3)
        del graph.edge_weight
    assert model(Batch.from_data_list(graphs)).shape == (5,)


@pytest.mark.parametrize("sequence", ["gru", "transformer"])
def test_multilayer_model_reads_one_vector_per_layer(sequence):
    """Three layers per trace, as the multi-layer dataset stacks them."""
    traces = []
    for graph in planted(4, 0):
        union = Batch.from_data_list([graph, graph, graph])
        traces.append(
            Data(
                x=union.x,
                edge_index=union.edge_index,
                edge_weight=union.edge_weight,
                is_answer=union.is_answer,
                node_layer=union.batch,
                num_graph_layers=3,
                y=graph.y,
            )
        )
    model = MultiLayerClassifier(in_channels=FEATURES, conv="gat", sequence=sequence)
    assert model(Batch.from_data_list(traces)).shape == (4,)


def test_threshold_rules_and_metrics():
    probs = torch.tensor([0.1, 0.35, 0.4, 0.8, 0.9])
    targets = torch.tensor([0, 1, 0, 1, 1])
    assert choose_threshold(probs, targets, "f1") == pytest.approx(0.35)
    assert choose_threshold(probs, targets, "youden") == pytest.approx(0.8)
    metrics = evaluate(probs, targets, 0.35)
    assert metrics["recall"] == 1.0 and metrics["precision"] == pytest.approx(0.75)
    assert metrics["auroc"] == pytest.approx(5 / 6)
    single = evaluate(probs, torch.ones(5, dtype=torch.long), 0.5)
    assert math.isnan(single["auroc"]) and single["n_hallucinated"] == 5
    assert choose_threshold(probs, torch.zeros(5, dtype=torch.long), "f1") == 0.5
