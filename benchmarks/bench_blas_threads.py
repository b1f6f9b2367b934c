"""The benchmark's logistic probes with numpy's OpenBLAS on one thread and on two.

    python benchmarks/bench_blas_threads.py FEATURES.safetensors [--rows 3500] [--blocks 5]

FEATURES is a store's detector-feature cache (``<data.root>/detector_features/features-*.
safetensors``, written by ``python -m training benchmark``). For each ``OPENBLAS_NUM_THREADS``
in 1 and 2, a fresh process fits the probe's pipeline (``training.detectors.fitting.logistic``:
standard scaling, balanced logistic regression) on the mean answer state of ``--blocks`` blocks
for each C of the probe's grid, on the first ``--rows`` traces, and reports wall and CPU seconds
and the load average. The labels alternate 0/1 (the cache holds no labels): the measure is of the
BLAS calls, not of a detector. OpenBLAS reads the variable once, when numpy loads: hence a
process per setting. This script sets no thread policy of its own: it measures both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np
from safetensors.numpy import load_file
from training.detectors.fitting import LOGISTIC_C, logistic

path, rows, blocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
features = load_file(path)
states, labels = features["mean_state"][:rows], np.arange(rows) % 2
start, cpu = time.perf_counter(), time.process_time()
for block in np.linspace(0, states.shape[1] - 1, blocks).astype(int):
    for c in LOGISTIC_C:
        logistic(c)(0).fit(states[:, block], labels)
print(json.dumps({"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                  "fits": blocks * len(LOGISTIC_C)}))
"""


def run(features: Path, threads: int, rows: int, blocks: int) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    before = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(features), str(rows), str(blocks)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "threads": threads, "load_before": before, "load_after": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", type=Path)
    parser.add_argument("--rows", type=int, default=3500)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    if not args.features.is_file():
        parser.error(f"{args.features} is not a file: give a features-*.safetensors cache")
    if args.rows < 2 or args.blocks < 1:
        parser.error("--rows must be at least 2 and --blocks at least 1")
    print(f"{platform.node()}, {os.cpu_count()} cores; {args.rows} rows, {args.blocks} blocks")
    print("| OPENBLAS_NUM_THREADS | fits | wall s | CPU s | load before -> after |")
    print("|---:|---:|---:|---:|---|")
    for threads in (1, 2):
        r = run(args.features, threads, args.rows, args.blocks)
        print(
            f"| {threads} | {r['fits']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['load_before']:.1f} -> {r['load_after']:.1f} |"
        )


if __name__ == "__main__":
    main()
