"""Sparse attention storage on real traces: bytes per trace, write and graph-build time, and
that the graphs it allows are the dense store's.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sparse_attention.py \\
        --store /work/stores/smollm2_demo --out /tmp/sparse_bench

Re-encodes the traces of a real store (read-only) through the store writer three times, dense
and ``--attention_format sparse`` at W = 0.01 and 0.05, under ``--out``; then, for each copy,
times reading one block's attention of every trace (``store.attention``: unpacking the lower
triangle, or decoding the sparse rows) and building its graphs (``traces_to_graphs``, in chunks
of 64), and checks that the graphs at thresholds >= W are identical to the dense copy's (one
block with each head mode, a stack of every block, and a max union of every block), and how far
the attention-reading detector features move (they are approximate on a sparse store). Prints
one JSON object.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.store import TraceStore, TraceWriter
from extraction.store.layout import MANIFEST
from graphs import GraphSpec, traces_to_graphs
from graphs.dataset import HallucinationGraphDataset

FORMATS = {"dense": None, "sparse_0.01": 0.01, "sparse_0.05": 0.05}
CHUNK = 64


def reencode(source: TraceStore, root: Path, min_attention: float | None, traces: list[str]):
    """``source``'s traces written again through the writer with this attention format; the
    seconds spent in the writer."""
    manifest = json.loads((source.root / MANIFEST).read_text())
    manifest["settings"]["attention_format"] = "dense" if min_attention is None else "sparse"
    manifest["settings"]["min_attention"] = min_attention
    shutil.rmtree(root, ignore_errors=True)
    seconds = 0.0
    with TraceWriter(root, manifest, file_prefix=source.manifest.settings.file_prefix) as writer:
        for number, qid in enumerate(tqdm(traces, desc=root.name, leave=False)):
            trace = source[qid]
            start = time.perf_counter()
            writer.add(trace)
            if number % 8 == 7:
                writer.commit()
            seconds += time.perf_counter() - start
        start = time.perf_counter()
    return seconds + time.perf_counter() - start


def attention_bytes(store: TraceStore) -> int:
    """Bytes of the attention tensors (values and sparse indices) in the store's shards."""
    total = 0
    for shard in store.shard_files:
        with shard.open("rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for key, entry in header.items():
            if "/attention" in key:
                start, end = entry["data_offsets"]
                total += end - start
    return total


def timed_build(store: TraceStore, spec: GraphSpec, repeats: int) -> dict:
    """Best of ``repeats``: seconds to read block ``spec.block`` of every trace, and to build
    its graphs."""
    qids, best_read, best_build = store.question_ids, float("inf"), float("inf")
    prompts = [store.row(qid).n_prompt_tokens for qid in qids]
    for _ in range(repeats):
        start = time.perf_counter()
        attentions = [store.attention(qid, spec.block) for qid in qids]
        read = time.perf_counter() - start
        hiddens = [store.resid_post(qid, spec.block) for qid in qids]
        start = time.perf_counter()
        edges = 0
        for first in range(0, len(qids), CHUNK):
            chunk = slice(first, first + CHUNK)
            graphs = traces_to_graphs(attentions[chunk], hiddens[chunk], prompts[chunk], spec)
            edges += sum(graph.num_edges for graph in graphs)
        best_read = min(best_read, read)
        best_build = min(best_build, time.perf_counter() - start)
    return {"read_s": round(best_read, 3), "build_s": round(best_build, 3), "edges": edges}


def same_graphs(dense: Path, sparse: Path, spec: GraphSpec, work: Path) -> bool:
    """Whether the dataset graphs of both stores are identical, tensor by tensor."""
    first = HallucinationGraphDataset(work / "dense", dense, spec, keep_unlabelled=True)
    second = HallucinationGraphDataset(work / "sparse", sparse, spec, keep_unlabelled=True)
    same = len(first) == len(second) and all(
        torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key]
        for a, b in zip(first, second, strict=True)
        for key in a.keys()  # noqa: SIM118 (Data has no __iter__ over keys)
    )
    shutil.rmtree(work)
    return same


def detector_feature_error(dense: Path, sparse: Path) -> dict[str, float]:
    """The largest absolute difference of each attention-reading detector feature (one trace's
    per-layer arrays, ``training.detectors.features``) between the two stores."""
    from training.detectors.features import trace_features

    first, second = TraceStore(dense), TraceStore(sparse)
    worst: dict[str, float] = {}
    for qid in first.question_ids:
        a = trace_features(first, qid, first.stored_blocks)
        b = trace_features(second, qid, second.stored_blocks)
        for key in ("llmcheck_attention", "lookback", "lapeig", "shift"):
            error = float((a[key] - b[key]).abs().max())
            worst[key] = max(worst.get(key, 0.0), error)
    return {key: float(f"{value:.3g}") for key, value in worst.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/work/stores/smollm2_demo")
    parser.add_argument("--out", required=True, help="folder for the re-encoded copies")
    parser.add_argument("--traces", type=int, default=None, help="the first N traces (all)")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-traces", type=int, default=40, help="traces in the graph checks")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the other graph benchmarks: steadier on a shared 2-core VM
    source = TraceStore(args.store)
    traces = source.question_ids[: args.traces]
    out = Path(args.out)
    result = {"store": str(source.root), "traces": len(traces), "layer": args.layer}
    stores = {}
    for name, min_attention in FORMATS.items():
        write_s = reencode(source, out / name, min_attention, traces)
        store = stores[name] = TraceStore(out / name)
        shards = sum(path.stat().st_size for path in store.shard_files)
        result[name] = {
            "write_s": round(write_s, 2),
            "bytes_per_trace": round(shards / len(traces)),
            "attention_bytes_per_trace": round(attention_bytes(store) / len(traces)),
        }
    seq = [source.row(qid).seq_len for qid in traces]
    result["mean_seq_len"] = round(sum(seq) / len(seq), 1)
    for name, store in stores.items():
        for threshold in (0.01, 0.05):
            if (FORMATS[name] or 0) <= threshold:
                spec = GraphSpec(block=args.layer, threshold=threshold)
                result[name][f"graphs_t{threshold}"] = timed_build(store, spec, args.repeats)

    checks = {}
    check_ids = traces[: args.check_traces]
    subset = out / "check_subset"
    for name, min_attention in FORMATS.items():
        reencode(source, subset / name, min_attention, check_ids)
    for name, min_attention in FORMATS.items():
        if min_attention is None:
            continue
        specs = [
            GraphSpec(block=args.layer, threshold=min_attention, head_mode=mode)
            for mode in ("mean", "max", "heads", "any")
        ]
        specs += [
            GraphSpec(block=args.layer, threshold=0.1, top_k=5, node_features="both"),
            GraphSpec(blocks="all", combine="stack", threshold=min_attention),
            GraphSpec(blocks="all", combine="union", head_mode="max", threshold=min_attention),
        ]
        checks[name] = {
            json.dumps({k: v for k, v in spec.as_dict().items() if v != getattr(GraphSpec, k)}):
            same_graphs(subset / "dense", subset / name, spec, out / "graphs")
            for spec in specs
        }  # fmt: skip
    result["identical_graphs"] = checks
    result["detector_feature_max_abs_error"] = {
        name: detector_feature_error(subset / "dense", subset / name)
        for name, min_attention in FORMATS.items()
        if min_attention is not None
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
