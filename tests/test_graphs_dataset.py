"""HallucinationGraphDataset: fields, cache keying, splits, batching, topology, bad input."""

from __future__ import annotations

import shutil
from itertools import chain

import networkx as nx
import pytest
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_mean_pool

from common import UserError
from extraction.store import TraceStore, rewrite_labels
from extraction.synthetic import write_synthetic_store
from graphs import HallucinationGraphDataset, graph_features, make_splits, to_networkx
from graphs.source import layer_graph
from graphs.spec import GraphSpec
from graphs.splits import SPLITS
from graphs.topology import FEATURES, answer_prompt_mass, clustering, pagerank
from tests.helpers import judgement, write_jsonl


@pytest.fixture
def processed(monkeypatch) -> list[str]:
    """Records the processed directory of every ``process()`` call."""
    calls: list[str] = []
    original = HallucinationGraphDataset.process

    def counting(self):
        calls.append(self.processed_dir)
        original(self)

    monkeypatch.setattr(HallucinationGraphDataset, "process", counting)
    return calls


def test_graph_fields(synthetic_store, tmp_path):
    store = TraceStore(synthetic_store)
    dataset = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(block=1))
    assert len(dataset) == len(store) == 6
    assert dataset.question_ids == store.question_ids
    for data, question_id in zip(dataset, store.question_ids, strict=True):
        row = store.rows[question_id]
        assert data.question_id == question_id and data.block == 1
        assert data.y.dtype == torch.long and data.y.tolist() == [row.label]
        assert data.x.shape == (row.seq_len, 32) and data.x.dtype == torch.float32
        assert data.is_answer.sum() == row.n_answer_tokens
        assert data.position.min() == 0 and data.position.max() == 1
        assert data.edge_weight.shape == (data.num_edges,)
        assert bool((data.edge_weight >= 0.01).all())
        data.validate()
    assert dataset.num_node_features == 32
    assert dataset.labels == [store.rows[q].label for q in store.question_ids]


def test_answer_nodes_and_head_features(synthetic_store, tmp_path):
    store = TraceStore(synthetic_store)
    dataset = HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(block=0, nodes="answer", head_mode="heads")
    )
    for data in dataset:
        assert bool(data.is_answer.all())
        assert data.num_nodes == store.rows[data.question_id].n_answer_tokens
        assert data.edge_attr.shape == (data.num_edges, 4) and data.edge_weight is None


def test_same_options_reuse_the_cache_and_new_ones_rebuild(synthetic_store, tmp_path, processed):
    first = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(block=1))
    again = HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(block=1))
    assert processed == [first.processed_dir] and again.processed_dir == first.processed_dir

    stricter = HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(block=1, threshold=0.05)
    )
    assert processed == [first.processed_dir, stricter.processed_dir]
    assert stricter.processed_dir != first.processed_dir
    assert sum(d.num_edges for d in stricter) < sum(d.num_edges for d in first)

    HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(block=1), pre_transform=lambda d: d
    )
    HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(block=1), force_reload=True)
    assert len(processed) == 4 and len(set(processed)) == 3


def test_relabelling_the_store_rebuilds(synthetic_store, tmp_path, processed):
    store_dir = tmp_path / "store"
    shutil.copytree(synthetic_store, store_dir)
    before = HallucinationGraphDataset(tmp_path / "graphs", store_dir, GraphSpec(block=0))
    first = before.question_ids[0]
    rewrite_labels(
        TraceStore(store_dir), {first: {"label": None, "label_method": "none", "label_score": None}}
    )
    after = HallucinationGraphDataset(tmp_path / "graphs", store_dir, GraphSpec(block=0))
    assert after.processed_dir != before.processed_dir and len(processed) == 2
    assert after.question_ids == before.question_ids[1:]  # unlabelled traces are skipped
    assert after.record["skipped"]["unlabelled"] == 1


def test_labels_from_a_judgement_file(synthetic_store, tmp_path):
    store = TraceStore(synthetic_store)
    rest = store.question_ids[1:]
    judged = {qid: i % 2 for i, qid in enumerate(rest)}
    rows = [
        judgement(q, store.rows[q].generated_answer_clean, j, "test") for q, j in judged.items()
    ]
    path = write_jsonl(tmp_path / "judged.jsonl", rows)
    index = HallucinationGraphDataset(tmp_path / "graphs", synthetic_store, GraphSpec(block=0))
    dataset = HallucinationGraphDataset(
        tmp_path / "graphs", synthetic_store, GraphSpec(block=0), labels=str(path)
    )
    assert dataset.processed_dir != index.processed_dir
    assert dataset.question_ids == rest  # the unjudged answer has no label: skipped
    assert [data.y.item() for data in dataset] == list(judged.values()) == dataset.labels
    assert dataset.label_source.describe() == f"{path} [external:test] (5/6 labelled)"
    assert index.label_source.describe() == "index [synthetic] (6/6 labelled)"


def test_pre_filter_and_transform(synthetic_store, tmp_path):
    def drop_first_feature(data):
        data.x = data.x[:, 1:]
        return data

    kept = HallucinationGraphDataset(
        tmp_path,
        synthetic_store,
        GraphSpec(block=1),
        pre_filter=lambda data: data.num_nodes % 2 == 0,
        pre_transform=drop_first_feature,
    )
    store = TraceStore(synthetic_store)
    even = [q for q in store.question_ids if store.rows[q].seq_len % 2 == 0]
    assert kept.question_ids == even and kept.record["skipped"]["filtered"] == 6 - len(even)
    assert kept.num_node_features == 31


def flat(splits: dict[str, list[str]]) -> list[str]:
    return sorted(chain.from_iterable(splits.values()))


def test_make_splits_is_deterministic_stratified_and_complete():
    ids = [f"q{k:03d}" for k in range(100)]
    labels = [int(k % 4 == 0) for k in range(100)]  # 25 positive
    splits = make_splits(ids, labels, seed=1)
    assert splits == make_splits(ids, labels, seed=1)
    assert splits != make_splits(ids, labels, seed=2)
    assert [len(splits[name]) for name in SPLITS] == [70, 15, 15]
    assert flat(splits) == ids
    positives = {name: sum(labels[ids.index(q)] for q in splits[name]) for name in SPLITS}
    # 25 positives: 17.5 / 3.75 / 3.75 rounded by largest remainder; 75 negatives: 53 / 11 / 11
    assert positives == {"train": 17, "val": 4, "test": 4}
    for name in SPLITS:
        assert splits[name] == sorted(splits[name])  # input order kept


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_make_splits_handles_tiny_classes(n):
    splits = make_splits([f"q{k}" for k in range(n)] + ["other"], [1] * n + [0])
    assert flat(splits) == sorted([f"q{k}" for k in range(n)] + ["other"])
    assert "other" in splits["train"]


def test_bad_split_ratios():
    with pytest.raises(UserError, match="ratios"):
        make_splits(["a"], [0], ratios=(0.5, 0.5, 0.5))


def test_splits_are_shared_by_every_dataset_of_a_root(synthetic_store, tmp_path):
    parts = {
        name: HallucinationGraphDataset(
            tmp_path, synthetic_store, GraphSpec(block=1), split=name
        ).question_ids
        for name in SPLITS
    }
    other = {
        name: HallucinationGraphDataset(
            tmp_path,
            synthetic_store,
            GraphSpec(blocks=[0, 1], nodes="answer", threshold=0.2),
            split=name,
        ).question_ids
        for name in SPLITS
    }
    assert parts == other
    assert flat(parts) == sorted(TraceStore(synthetic_store).question_ids)
    assert (tmp_path / "splits.json").exists()


def test_loader_batches_single_layer_graphs(synthetic_store, tmp_path):
    dataset = HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(block=1, topology=True)
    )
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch.num_graphs == 4 and batch.y.shape == (4,)
    assert batch.topo.shape == (4, len(FEATURES))
    assert batch.x.shape == (sum(dataset[k].num_nodes for k in range(4)), 32)
    assert batch.question_id == dataset.question_ids[:4]


def test_multi_layer_graphs_batch_into_a_layer_sequence(synthetic_store, tmp_path):
    layers = [1, 0, 1]
    dataset = HallucinationGraphDataset(
        tmp_path, synthetic_store, GraphSpec(blocks=layers, topology=True)
    )
    singles = {
        layer: HallucinationGraphDataset(
            tmp_path, synthetic_store, GraphSpec(block=layer, topology=True)
        )
        for layer in (0, 1)
    }
    data = dataset[0]
    assert (
        data.num_graph_layers == 3
        and data.blocks == layers
        and data.topo.shape == (1, 3, len(FEATURES))
    )
    for position, layer in enumerate(layers):
        part = data.subgraph(data.node_layer == position)
        single = singles[layer][0]
        assert torch.equal(part.x, single.x)
        assert torch.equal(part.edge_index, single.edge_index)
        assert torch.equal(part.edge_weight, single.edge_weight)
        assert torch.equal(data.topo[0, position], single.topo[0])

    batch = next(iter(DataLoader(dataset, batch_size=5)))
    n_layers = len(dataset.blocks)
    pooled = global_mean_pool(batch.x, batch.batch * n_layers + batch.node_layer)
    sequence = pooled.view(batch.num_graphs, n_layers, -1)
    assert sequence.shape == (5, 3, 32) and batch.topo.shape == (5, 3, len(FEATURES))
    for graph in range(5):
        for position, layer in enumerate(layers):
            expected = singles[layer][graph].x.mean(dim=0)
            assert torch.allclose(sequence[graph, position], expected, atol=1e-6)


def test_topology_matches_networkx(synthetic_store):
    store = TraceStore(synthetic_store)
    for question_id in store.question_ids:
        _, data = layer_graph(store, question_id, GraphSpec(block=1))
        reversed_graph = to_networkx(store, question_id, GraphSpec(block=1)).reverse()
        expected = nx.pagerank(reversed_graph, weight="weight")
        assert torch.allclose(
            pagerank(data),
            torch.tensor([expected[k] for k in range(data.num_nodes)], dtype=torch.float64),
            atol=1e-12,
        )
        undirected = reversed_graph.to_undirected()
        assert clustering(data) == pytest.approx(nx.average_clustering(undirected), abs=1e-6)
        n_prompt = store.rows[question_id].n_prompt_tokens
        mass = sum(w for i, j, w in reversed_graph.edges(data="weight") if i >= n_prompt > j)
        assert answer_prompt_mass(data) == pytest.approx(
            mass / store.rows[question_id].n_answer_tokens
        )
        assert list(graph_features(data)) == list(FEATURES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block": 1, "blocks": [0]}, "set one of block"),
        ({}, "names no block"),
        ({"blocks": []}, "empty"),
        ({"layer": 2}, "block 2 is not stored"),
        ({"blocks": [0, -1]}, "block -1 is not stored"),
        ({"block": 0, "head_mode": "median"}, "head_mode"),
        ({"block": 0, "nodes": "prompt"}, "nodes"),
        ({"block": 0, "threshold": 0}, "threshold"),
        ({"block": 0, "top_k": 0}, "top_k"),
    ],
)
def test_bad_options(synthetic_store, tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(**kwargs))
    with pytest.raises(UserError, match="split"):
        HallucinationGraphDataset(tmp_path, synthetic_store, GraphSpec(block=0), split="dev")


def test_missing_store(tmp_path):
    with pytest.raises(UserError, match="not a trace store"):
        HallucinationGraphDataset(tmp_path / "graphs", tmp_path / "nowhere", GraphSpec(block=0))


def test_unlabelled_traces_are_kept_for_scoring_only(tmp_path):
    store = write_synthetic_store(tmp_path / "store", n_traces=4, labelled=False)
    with pytest.raises(UserError, match="has no labelled trace"):  # nothing to train on
        HallucinationGraphDataset(tmp_path / "g", traces=store, spec=GraphSpec(block=1))
    scored = HallucinationGraphDataset(
        tmp_path / "g", traces=store, keep_unlabelled=True, spec=GraphSpec(block=1)
    )
    assert scored.len() == 4
    assert all(scored.get(i).y.tolist() == [-1] for i in range(4))
    assert scored.splits == {"train": [], "val": [], "test": []}
