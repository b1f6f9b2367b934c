"""What the readers' hash checks cost against a graph build (issue 21; goal: at most 5%).

Builds one graph dataset of a store twice, from a cold cache folder each time: once as every
reader now does (each trace's tensors checked against its recorded sha256 the first time it is
read) and once with the check off (``TraceStore(check_traces=False)``, what ``verify`` uses
because it hashes on its own), then times the check alone (``store.trace_sha256`` of every
trace). Prints one JSON line. ``--copy_to DIR`` first copies (up to ``--limit``) traces of a
store written before per-tensor checksums through today's writer, which records them.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_integrity.py \
        --traces /work/stores/smollm2_135M_demo --copy_to /work/stores/issue21/demo_copy \
        --limit 150 --layer 15
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.store import TraceStore, TraceWriter
from extraction.store.integrity import tensor_sha256
from extraction.store.layout import read_manifest, tensor_key
from graphs import GraphSpec, HallucinationGraphDataset


def copy_store(source: str, target: str, limit: int | None) -> str:
    """The first ``limit`` traces of ``source``, written again by the current writer."""
    store = TraceStore(source)
    with TraceWriter(
        target, read_manifest(store.root), file_prefix=store.manifest.settings.file_prefix
    ) as writer:
        for question_id in store.question_ids[:limit]:
            writer.add(store[question_id])
    return target


def build_seconds(traces: str, layer: int, check: bool) -> float:
    """One graph build from an empty cache folder, the store's per-trace check on or off."""
    real_init = TraceStore.__init__

    def init(self, root, check_traces=True, damaged_rows=None):
        real_init(self, root, check_traces=check, damaged_rows=damaged_rows)

    root = Path(tempfile.mkdtemp(prefix="bench_integrity_"))
    try:
        with mock.patch.object(TraceStore, "__init__", init):
            start = time.perf_counter()
            HallucinationGraphDataset(root, traces, GraphSpec(block=layer))
            return time.perf_counter() - start
    finally:
        shutil.rmtree(root)


def hash_seconds(traces: str, layer: int | None = None) -> float:
    """sha256 of every trace whole (``layer`` None: the check of a store without per-tensor
    digests), or of only the tensors a build of ``layer`` reads (what the check now hashes)."""
    store = TraceStore(traces, check_traces=False)
    keys = {
        qid: store.trace_keys(qid)
        if layer is None
        else [tensor_key(qid, "attentions", layer), tensor_key(qid, "hidden_states", layer + 1)]
        for qid in store.question_ids
    }
    handles = {path.name: safe_open(str(path), framework="pt") for path in store.shard_files}
    start = time.perf_counter()
    for question_id, names in keys.items():
        handle = handles[store.row(question_id).shard]
        for name in names:
            tensor_sha256(name, handle.get_tensor(name))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", required=True)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--copy_to", help="copy the store through today's writer first")
    parser.add_argument("--limit", type=int, help="traces to copy (default: all)")
    args = parser.parse_args()
    if args.copy_to:
        args.traces = copy_store(args.traces, args.copy_to, args.limit)
    hash_seconds(args.traces)  # warm the page cache: both builds then read from memory
    checked = min(build_seconds(args.traces, args.layer, True) for _ in range(args.repeats))
    unchecked = min(build_seconds(args.traces, args.layer, False) for _ in range(args.repeats))
    hashing = min(hash_seconds(args.traces) for _ in range(args.repeats))
    hashing_read = min(hash_seconds(args.traces, args.layer) for _ in range(args.repeats))
    store = TraceStore(args.traces)
    print(
        json.dumps(
            {
                "store": args.traces,
                "traces": len(store),
                "store_mb": round(sum(p.stat().st_size for p in store.shard_files) / 2**20, 1),
                "layer": args.layer,
                "build_checked_s": round(checked, 2),
                "build_unchecked_s": round(unchecked, 2),
                "hash_whole_traces_s": round(hashing, 2),
                "hash_read_tensors_s": round(hashing_read, 3),
                "overhead_measured": round(checked / unchecked - 1, 4),
                "whole_trace_hash_share_of_build": round(hashing / unchecked, 4),
                "read_tensor_hash_share_of_build": round(hashing_read / unchecked, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
