"""Sparse attention stores (``--attention_format sparse --min_attention W``): what they keep,
that every graph they allow is the dense store's, and the clear errors for the rest."""

from __future__ import annotations

import json
import shutil
from itertools import product
from pathlib import Path

import pytest
import torch

from common import UserError
from extraction.cli import main as extraction_main
from extraction.export import export_pickle, load_pickle_batch
from extraction.store import TraceStore, TraceWriter
from extraction.store.sparse import KEEP_MARGIN
from extraction.store.verify import verify_store
from extraction.synthetic import SyntheticShape, synthetic_manifest, write_synthetic_store
from graphs import GraphSpec, HallucinationGraphDataset, traces_to_graphs
from tests.helpers import assert_one_line_errors, real_store

W = 0.05
# Longer traces than the tests' default, so that many weights fall below W.
SHAPE = SyntheticShape(blocks=3, heads=4, prompt_tokens=30, answer_tokens=(6, 9, 1, 12))


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    """The same eight traces stored dense and sparse (W = 0.05)."""
    root = tmp_path_factory.mktemp("sparse")
    dense = write_synthetic_store(root / "dense", 8, SHAPE)
    sparse = write_synthetic_store(root / "sparse", 8, SHAPE, min_attention=W)
    return dense, sparse


def test_sparse_store_keeps_every_head_where_one_reaches_w_and_the_diagonal(stores):
    dense, sparse = TraceStore(stores[0]), TraceStore(stores[1])
    assert sparse.min_attention == W and dense.min_attention is None
    assert sparse.manifest.settings.attention_format == "sparse"
    dropped = 0
    for qid, block in product(dense.question_ids, dense.stored_blocks):
        full, kept = dense.attention(qid, block), sparse.attention(qid, block)
        assert kept.dtype == full.dtype and kept.shape == full.shape
        # A margin under W (for float32 rounding of a head mean), see extraction.store.sparse.
        keep = full.float().amax(0) >= W * (1 - KEEP_MARGIN)
        keep |= torch.eye(full.shape[-1], dtype=torch.bool)
        assert torch.equal(kept, full * keep)
        dropped += int((~keep).tril().sum())
    assert dropped > 0  # the test data has weights below W
    assert sum(f.stat().st_size for f in sparse.shard_files) < sum(
        f.stat().st_size for f in dense.shard_files
    )


def test_sparse_store_verifies_and_exports(stores, tmp_path):
    store = TraceStore(stores[1])
    assert verify_store(store.root)[1] == []
    [path] = export_pickle(stores[1], tmp_path)
    record = load_pickle_batch(path, trust_pickle=True)[0]
    qid = record["question_id"]
    assert torch.equal(torch.from_numpy(record["attentions"][1]), store.attention(qid, 1).float())


def test_a_damaged_sparse_index_tensor_is_found_by_verify(stores, tmp_path):
    copy = shutil.copytree(stores[1], tmp_path / "store")
    store = TraceStore(copy)
    qid = store.question_ids[0]
    shard = store.rows[qid].shard
    with open(copy / shard, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_length))
    start, _ = header[f"{qid}/attention_columns.0"]["data_offsets"]
    data = bytearray((copy / shard).read_bytes())
    data[8 + header_length + start] ^= 0xFF
    (copy / shard).write_bytes(bytes(data))
    (finding,) = verify_store(copy)[1]
    assert finding.path.name == shard and finding.traces == (qid,)


def _graphs(root: Path, store: Path, spec: GraphSpec) -> list:
    return list(HallucinationGraphDataset(root, store, spec))


def _assert_same_graphs(first: list, second: list) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():  # noqa: SIM118 (Data has no __iter__ over keys)
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


SPECS = [
    GraphSpec(block=1, threshold=threshold, head_mode=mode, top_k=top_k, node_features=features)
    for threshold, mode, top_k, features in product(
        (W, 0.12), ("mean", "max", "heads", "any"), (None, 3), ("hidden", "both")
    )
] + [
    GraphSpec(block=0, threshold=W, nodes="answer", prompt_edges=False, self_loops=False),
    GraphSpec(block=2, threshold=W, node_features="attention_diagonal", topology=True),
    GraphSpec(blocks="all", combine="stack", threshold=W, head_mode="heads"),
    GraphSpec(blocks="all", combine="stack", threshold=0.2, head_mode="any", top_k=2),
    GraphSpec(blocks=[0, 2], combine="union", threshold=W, head_mode="max"),
    GraphSpec(blocks="all", combine="union", head_mode="max", node_features="both", threshold=W),
    GraphSpec(blocks=[1], combine="union", threshold=W, head_mode="mean"),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: str(spec.as_dict()))
def test_graphs_at_threshold_at_least_w_are_the_dense_stores(stores, spec, tmp_path):
    dense = _graphs(tmp_path / "dense", stores[0], spec)
    assert sum(graph.num_edges for graph in dense) > 0
    _assert_same_graphs(dense, _graphs(tmp_path / "sparse", stores[1], spec))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (GraphSpec(block=1, threshold=0.01), "below the store's min_attention 0.05"),
        *(
            (GraphSpec(blocks=layers, combine="union", head_mode=mode, threshold=W), "not exact")
            for layers, mode in (("all", "mean"), ([0, 1], "heads"), ([0, 2], "any"))
        ),
    ],
)
def test_a_spec_a_sparse_store_cannot_build_exactly_is_refused(stores, spec, message, tmp_path):
    with pytest.raises(UserError, match=message):
        HallucinationGraphDataset(tmp_path, stores[1], spec)
    HallucinationGraphDataset(tmp_path / "dense", stores[0], spec)  # dense: every spec builds


def test_why_a_head_mean_across_blocks_is_refused(stores):
    """The refused union: each block keeps its own positions, so the mean over several blocks'
    heads would read one block's unkept weights as 0 and differ from the dense store's."""
    spec = GraphSpec(threshold=W, node_features="attention_diagonal")
    weights = []
    for store in map(TraceStore, stores):
        attentions = [
            torch.cat([store.attention(qid, block) for block in store.stored_blocks])
            for qid in store.question_ids
        ]
        prompts = [store.row(qid).n_prompt_tokens for qid in store.question_ids]
        graphs = traces_to_graphs(attentions, [None] * len(attentions), prompts, spec)
        weights.append([graph.edge_weight for graph in graphs])
    assert any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_one_layer_graph_of_a_sparse_store_checks_the_threshold(stores):
    from graphs.source import layer_graph

    store = TraceStore(stores[1])
    with pytest.raises(UserError, match="below the store's min_attention"):
        layer_graph(store, store.question_ids[0], GraphSpec(block=0, threshold=0.02))
    layer_graph(store, store.question_ids[0], GraphSpec(block=0, threshold=W))


def test_resume_with_another_attention_format_is_refused(stores, tmp_path):
    root = write_synthetic_store(tmp_path / "store", 2, SHAPE)
    for min_attention in (W, 0.01):
        with pytest.raises(UserError, match="attention_format: 'dense' → 'sparse'"):
            manifest = synthetic_manifest(SHAPE, min_attention=min_attention)
            TraceWriter(root, manifest, file_prefix="synthetic")
    sparse = write_synthetic_store(tmp_path / "sparse", 2, SHAPE, min_attention=W)
    with pytest.raises(UserError, match=r"min_attention: 0\.05 → 0\.01"):
        TraceWriter(sparse, synthetic_manifest(SHAPE, min_attention=0.01), file_prefix="synthetic")


def test_a_store_without_the_attention_format_resumes_as_dense(tmp_path):
    root = write_synthetic_store(tmp_path / "store", 2, SHAPE)
    manifest = json.loads((root / "manifest.json").read_text())
    for key in ("attention_format", "min_attention"):
        del manifest["settings"][key]  # as an older writer wrote it
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert TraceStore(root).min_attention is None
    with TraceWriter(root, manifest, file_prefix="synthetic"):
        pass
    with TraceWriter(root, synthetic_manifest(SHAPE), file_prefix="synthetic"):
        pass


def test_bad_attention_options_are_one_line_errors_before_the_model_loads(capsys):
    assert_one_line_errors(
        extraction_main,
        [
            "--model no/such-model --attention_format sparse",
            "--model no/such-model --attention-format sparse --min-attention 0",
            "--model no/such-model --attention_format sparse --min_attention 1.5",
            "--model no/such-model --min_attention 0.01",
            "--model no/such-model --attention_format csr --min_attention 0.01",
        ],
        capsys,
    )


@pytest.mark.slow
def test_real_model_sparse_extraction_builds_the_dense_stores_graphs(tmp_path_factory, tmp_path):
    """SmolLM2 on four demo questions, dense and sparse at W = 0.01: the same answers, and the
    same graphs at the seed's threshold for one block, a stack of blocks and a max union."""
    flags = {"batch-size": 2}
    dense = real_store(tmp_path_factory, "demo", None, n=4, **flags)
    sparse = real_store(
        tmp_path_factory, "demo", None, n=4, **flags,
        **{"attention-format": "sparse", "min-attention": 0.01},
    )  # fmt: skip
    assert TraceStore(sparse).min_attention == 0.01
    assert verify_store(sparse)[1] == []
    for spec in (
        GraphSpec(block=15),
        GraphSpec(blocks=[3, 15, 27], combine="stack", head_mode="any", top_k=4),
        GraphSpec(blocks="all", combine="union", head_mode="max", node_features="both"),
    ):
        _assert_same_graphs(
            _graphs(tmp_path / "dense", dense, spec), _graphs(tmp_path / "sparse", sparse, spec)
        )
    bytes_of = [sum(f.stat().st_size for f in TraceStore(s).shard_files) for s in (dense, sparse)]
    assert bytes_of[1] < bytes_of[0]


def test_compare_on_a_sparse_store_says_its_attention_maps_are_approximate(stores, tmp_path):
    from graphs.cli import main as graphs_main

    out = tmp_path / "compare"
    args = ["compare", "--traces", str(stores[1]), "--graph.blocks", "[0,1]", "--output", str(out)]
    assert graphs_main([*args, "--bootstrap", "50", "--graph.threshold", str(W)]) == 0
    record = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert "attention maps miss the weights below" in record["approximate"]
    assert "Approximate: the attention maps" in (out / "compare.md").read_text(encoding="utf-8")
    assert graphs_main([*args, "--graph.threshold", "0.01"]) == 2  # below W


def test_benchmark_names_the_detectors_a_sparse_store_makes_approximate(stores):
    from training.benchmark import sparse_caveats
    from training.detectors.registry import DETECTORS

    approximate = sparse_caveats(TraceStore(stores[1]), DETECTORS)
    assert set(approximate) == {"lookback_lens", "lapeigvals", "hallushift"}
    assert sparse_caveats(TraceStore(stores[0]), DETECTORS) == {}
