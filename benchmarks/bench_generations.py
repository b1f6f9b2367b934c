"""Time and bytes per question with K generations per question (``--num_generations K``).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generations.py \
        --num-samples 20 --generations 1 5 10

For each K: ``python -m extraction`` (the packaged SmolLM2-135M, seed decoding, the first N
TriviaQA rows of ``../shared/data``) in a process of its own, then the same command again on the
finished store, which only loads the model and finds nothing to do: the difference is the time
the questions took. Reported per question: wall and CPU seconds (user + system of the process;
on a shared machine CPU time is the steadier figure), and the store's bytes (shards, index,
manifest, consistency file) with the consistency file's share.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRIVIAQA = REPO.parent / "shared" / "data" / "triviaqa" / "validation.jsonl"


def run(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -m extraction ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "extraction", *args],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(generations: int, num_samples: int, out: Path) -> dict:
    args = [
        "--model", "smollm2_135M", "--dataset", "triviaqa", "--dataset-file", str(TRIVIAQA),
        "--num-samples", str(num_samples), "--output-dir", str(out),
        "--num-generations", str(generations),
    ]  # fmt: skip
    if generations > 1:
        args.append("--do-sample")
    wall, cpu = run(args)
    idle_wall, idle_cpu = run(args)  # model load and start-up only: every trace is stored
    files = [path for path in out.iterdir() if path.is_file()]
    total = sum(path.stat().st_size for path in files)
    consistency = sum(path.stat().st_size for path in out.glob("consistency*.safetensors"))
    return {
        "generations": generations,
        "questions": num_samples,
        "wall_s_per_question": (wall - idle_wall) / num_samples,
        "cpu_s_per_question": (cpu - idle_cpu) / num_samples,
        "start_up_wall_s": idle_wall,
        "bytes_per_question": total / num_samples,
        "consistency_bytes_per_question": consistency / num_samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=20)
    parser.add_argument("--generations", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--output", type=Path, help="also write the results here (JSON)")
    options = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for generations in options.generations:
            result = measure(generations, options.num_samples, Path(tmp) / f"k{generations}")
            results.append(result)
            print(json.dumps(result), flush=True)
    print("\n| K | s/question (wall) | CPU s/question | MB/question | of which consistency |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['generations']} | {r['wall_s_per_question']:.1f} | "
            f"{r['cpu_s_per_question']:.1f} | {r['bytes_per_question'] / 2**20:.2f} | "
            f"{r['consistency_bytes_per_question'] / 2**10:.1f} KB |"
        )
    if options.output:
        options.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
