"""Peak memory of a command as a store fills: RSS sampled against the number of indexed traces.

    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 python benchmarks/watch_rss.py \\
        --store runs/tq --log runs/tq_rss.tsv --at 100 400 817 -- \\
        python -m extraction --dataset truthfulqa --dataset_file TruthfulQA.csv --output_dir runs/tq

Runs the command, reads its ``VmRSS``/``VmHWM`` (``/proc/PID/status``) and the store's ``ok``
index rows every ``--every`` seconds into ``--log`` (TSV), and prints, as JSON, the peak RSS
(``VmHWM``) reached by the time the store held each of ``--at`` traces, and the exact peak of
the whole run (``ru_maxrss`` of the finished process). Memory that grows with the shard shows
as a peak that climbs with the count; memory bounded by a batch is flat after the first batch.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30


def status_bytes(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a live process, in bytes (empty once it has exited)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM") if key in fields}


def indexed_traces(store: Path) -> int:
    """Questions whose trace is on disk: ``ok`` rows of the index (the last row of a question
    wins; a half-written last line is not counted)."""
    try:
        text = (store / "index.jsonl").read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    status: dict[str, str] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        status[row["question_id"]] = row.get("status")
    return sum(value == "ok" for value in status.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="the store the command fills")
    parser.add_argument("--log", type=Path, required=True, help="TSV of the samples")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--at", type=int, nargs="+", default=[100, 400, 817])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to watch after --")

    start = time.monotonic()
    child = subprocess.Popen(command)
    peak_at: dict[int, int] = {}
    with args.log.open("w") as log:
        log.write("seconds\ttraces\trss_mib\thwm_mib\n")
        while True:
            done = child.poll() is not None
            sample = status_bytes(child.pid)
            traces = indexed_traces(args.store)
            if sample:
                log.write(
                    f"{time.monotonic() - start:.0f}\t{traces}\t{sample['VmRSS'] / 2**20:.0f}"
                    f"\t{sample['VmHWM'] / 2**20:.0f}\n"
                )
                log.flush()
                for count in args.at:
                    if traces >= count and count not in peak_at:
                        peak_at[count] = sample["VmHWM"]
            if done:
                break
            time.sleep(args.every)
    # poll() reaped the child: its peak is in the children's rusage (kilobytes on Linux).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    traces = indexed_traces(args.store)
    for count in args.at:  # reached in the last interval: the run's peak is the bound
        if traces >= count:
            peak_at.setdefault(count, peak)
    result = {
        "command": " ".join(command),
        "exit_status": child.returncode,
        "traces": traces,
        "seconds": round(time.monotonic() - start),
        "peak_rss_gib_at_traces": {str(k): round(v / GIB, 2) for k, v in sorted(peak_at.items())},
        "peak_rss_gib": round(peak / GIB, 2),
    }
    print(json.dumps(result, indent=1))
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
