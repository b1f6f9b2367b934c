"""A store as a run killed after its first N questions leaves it, made from a finished store.

    python benchmarks/partial_store.py --source /work/stores/smollm2_truthfulqa \\
        --manifest runs/tq/manifest.json --traces 696 --output runs/tq_resume

The source's whole shards among the first ``--traces`` traces are copied with their index rows;
the traces after the last whole shard go through a :class:`~extraction.store.TraceWriter` in
batches of ``--batch-size`` and are left as the part files of an unfinished shard (the writer is
dropped without its final merge, as by a SIGKILL). ``--manifest`` is the manifest the run to
resume writes (the same command's), so that run resumes into the result: it extracts only the
remaining questions, then merges the adopted parts with its own. This measures the end of a
long run (its largest merge, its longest batches) without spending hours redoing its start.
The resuming run must label as the source did (``--label_method``, as its refusal says).
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import read_json
from extraction.store import TraceStore, TraceWriter
from extraction.store.contract import run_file_prefix
from extraction.store.layout import INDEX, MANIFEST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="a finished store (read-only)")
    parser.add_argument("--manifest", type=Path, required=True, help="the resuming run's manifest")
    parser.add_argument("--traces", type=int, required=True, help="how many questions are done")
    parser.add_argument("--output", type=Path, required=True, help="a new directory")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    source = TraceStore(args.source)
    done = source.question_ids[: args.traces]
    shard_of = {qid: source.rows[qid].shard for qid in done}
    whole = [
        name
        for name in sorted(set(shard_of.values()))
        if sum(shard == name for shard in shard_of.values())
        == sum(row.shard == name for row in source.rows.values() if row.ok)
    ]
    args.output.mkdir(parents=True)
    shutil.copy(args.manifest, args.output / MANIFEST)
    for name in whole:
        shutil.copy(args.source / name, args.output / name)
    rows = [source.rows[qid].to_json() for qid in done if shard_of[qid] in whole]
    (args.output / INDEX).write_text("".join(json.dumps(row) + "\n" for row in rows))
    rest = [qid for qid in done if shard_of[qid] not in whole]
    manifest = read_json(args.manifest)
    settings = manifest["settings"]
    prefix = run_file_prefix(settings["model"], settings["dataset"])
    writer = TraceWriter(args.output, manifest, file_prefix=prefix)
    for first in range(0, len(rest), args.batch_size):
        for qid in rest[first : first + args.batch_size]:
            writer.add(source[qid])
        writer.commit()
    writer._release_lock()  # killed: no final merge, the parts stay
    print(f"{args.output}: {len(rows)} traces in {whole}, {len(rest)} in part files")


if __name__ == "__main__":
    main()
