"""Peak memory of the store writer alone, replaying real traces, per shard size.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_writer_memory.py \\
        --source /work/stores/smollm2_truthfulqa --shard-sizes 25 100 500 [--code OLD_CHECKOUT]

Reads the traces of an existing store (read-only) and writes them again, in batches of
``--batch-size``, through a :class:`~extraction.store.TraceWriter` with each shard size, each
in a fresh process: its peak RSS (``VmHWM``) once 100, 400, ... traces are written, minus the
RSS before the first write (the interpreter, torch), is what the writer holds. ``--code``
imports the ``extraction`` package from another checkout (e.g. ``git archive main``), to
compare writers on the same traces. The source is read through a fresh reader per batch, so
its memory-mapped shards never accumulate in the RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20


def rss(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def replay(source: Path, shard_size: int, batch_size: int, limit: int | None, at: list[int]):
    """Write ``source``'s traces into a temporary store; the peak RSS at each count of ``at``."""
    from common import read_json
    from extraction.store import TraceStore, TraceWriter

    question_ids = TraceStore(source).question_ids[:limit]
    manifest = read_json(source / "manifest.json")
    baseline = rss("VmRSS")
    peaks: dict[int, int] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        with TraceWriter(
            root, manifest, file_prefix="replay", max_traces_per_shard=shard_size
        ) as writer:
            for first in range(0, len(question_ids), batch_size):
                reader = TraceStore(source)  # dropped after the batch: its mappings go too
                for qid in question_ids[first : first + batch_size]:
                    writer.add(reader[qid])
                writer.commit()
                del reader
                gc.collect()  # the reader's shard cache is a reference cycle
                written = min(first + batch_size, len(question_ids))
                for count in at:
                    if written >= count and count not in peaks:
                        peaks[count] = rss("VmHWM")
        peaks[len(question_ids)] = rss("VmHWM")  # after the last merge
        shards = sorted(path.name for path in root.glob("*.safetensors"))
        assert TraceStore(root).check_headers() == {}
    return {
        "shard_size": shard_size,
        "traces": len(question_ids),
        "shards": len(shards),
        "seconds": round(time.perf_counter() - start, 1),
        "baseline_mib": round(baseline / MIB),
        "peak_mib_at_traces": {str(k): round(v / MIB) for k, v in sorted(peaks.items())},
        "writer_peak_mib": round((peaks[len(question_ids)] - baseline) / MIB),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/stores/smollm2_truthfulqa"))
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[25, 100, 500])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--traces", type=int, default=None, help="the first N (default: all)")
    parser.add_argument("--at", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, str(args.code))
        (size,) = args.shard_sizes
        print(json.dumps(replay(args.source, size, args.batch_size, args.traces, args.at)))
        return
    # Set in this parent only: each child imports ``extraction`` from its --code checkout first.
    from common import set_thread_policy

    set_thread_policy()  # the children inherit it; they import torch, this process does not
    results = []
    for size in args.shard_sizes:
        command = [sys.executable, __file__, "--one", "--shard-sizes", str(size)]
        command += ["--source", str(args.source), "--batch-size", str(args.batch_size)]
        command += ["--code", str(args.code), "--at", *map(str, args.at)]
        if args.traces:
            command += ["--traces", str(args.traces)]
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"code": str(args.code), "results": results}, indent=1))


if __name__ == "__main__":
    main()
