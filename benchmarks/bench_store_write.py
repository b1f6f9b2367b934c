"""What batch-granular crash safety and checksums cost the store writer.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_store_write.py --traces 200 --batch-size 8

Synthetic traces with SmolLM2-135M's sizes (30 blocks, 9 heads, hidden 576, 51 tokens: the mean
sequence of the extraction benchmark), written (a) as the writer does now: a part file per batch,
checksums, parts merged into the shard at the end; (b) as one ``save_file`` of the whole shard,
the earlier writer's only write. The seconds are the writer's alone: extraction itself spends
~1.6 s per question on this machine (BENCHMARKS.md), so the difference is what matters.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.store import TraceStore, TraceWriter
from extraction.store.trace import Trace
from extraction.synthetic import SyntheticShape, synthetic_trace

SHAPE = SyntheticShape(blocks=30, heads=9, hidden=576, prompt_tokens=40)
SEQ = 51


def bench_trace(number: int) -> Trace:
    return synthetic_trace(f"q{number}", SHAPE, SEQ - SHAPE.prompt_tokens, label=1, seed=number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    traces = [bench_trace(i) for i in range(args.traces)]
    manifest = {"settings": {"model": "bench", "dataset": "synthetic"}, "model": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        writer = TraceWriter(root, manifest, file_prefix="bench", max_traces_per_shard=500)
        start = time.perf_counter()
        commits = []
        for first in range(0, len(traces), args.batch_size):
            began = time.perf_counter()
            for trace in traces[first : first + args.batch_size]:
                writer.add(trace)
            writer.commit()
            commits.append(time.perf_counter() - began)
        began = time.perf_counter()
        writer.__exit__(None, None, None)  # merges the parts into the shard
        merge = time.perf_counter() - began
        now = time.perf_counter() - start
        (shard,) = TraceStore(root).shard_files
        shard_mib = shard.stat().st_size / 2**20
        began = time.perf_counter()
        assert TraceStore(root).verify() == {}
        verify = time.perf_counter() - began

        tensors = {}
        for trace in traces:
            tensors.update(writer._tensors_of(trace))
        began = time.perf_counter()
        save_file(tensors, str(Path(tmp) / "one_write.safetensors"))
        one_write = time.perf_counter() - began
    result = {
        "traces": args.traces,
        "batch_size": args.batch_size,
        "shard_mib": round(shard_mib, 1),
        "parts_and_merge_s": round(now, 2),
        "per_batch_commit_s": round(sum(commits) / len(commits), 3),
        "merge_s": round(merge, 2),
        "one_save_file_s": round(one_write, 2),
        "verify_s": round(verify, 2),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
