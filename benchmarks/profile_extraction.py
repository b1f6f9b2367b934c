"""Where an extraction's time goes, per stage: one ``python -m extraction`` run in this process
with timers around its stages.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_extraction.py --model smollm2_135M \
        --num-samples 24 --batch-size 8

Stages (wall seconds and CPU seconds of this process, user + system, all threads): loading the
model; prefill (each prompt once) and beam steps (every forward pass after it) inside the
compacting beam search, and the search's own bookkeeping (top-k, finished beams, cache reorder
and compaction); the final pass; labelling; writing (the writer's add and commit); the rest
(prompts, the clean cut, per-token decoding, trace assembly, the progress bar). The stages are
timed by wrapping the functions that do them, so nested time is counted once, in the inner one.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HALLUGRAPH_SHARED_DATA", REPO.parent / "shared" / "data"))
TRIVIAQA = SHARED_DATA / "triviaqa" / "validation.jsonl"


class Stages:
    """Wall and CPU seconds per stage; a stage entered inside another is taken out of it."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.stack: list[str] = []

    def wrap(self, owner, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            with self.timing(stage):
                return inner(*args, **kwargs)

        setattr(owner, name, timed)

    @contextlib.contextmanager
    def timing(self, stage: str):
        wall, cpu = time.perf_counter(), time.process_time()
        self.stack.append(stage)
        try:
            yield
        finally:
            self.stack.pop()
            d_wall, d_cpu = time.perf_counter() - wall, time.process_time() - cpu
            self.wall[stage] = self.wall.get(stage, 0.0) + d_wall
            self.cpu[stage] = self.cpu.get(stage, 0.0) + d_cpu
            if self.stack:  # the enclosing stage's time excludes this one
                outer = self.stack[-1]
                self.wall[outer] = self.wall.get(outer, 0.0) - d_wall
                self.cpu[outer] = self.cpu.get(outer, 0.0) - d_cpu


def instrument(stages: Stages) -> None:
    from extraction import beam_search, run, tracing
    from extraction.store import TraceWriter

    stages.wrap(run, "load_model", "loading the model")
    stages.wrap(tracing, "generate_answers", "generation, other")
    stages.wrap(tracing, "sample_answers", "sampling")
    stages.wrap(beam_search._Search, "_prefill_once", "prefill")
    stages.wrap(beam_search._Search, "_forward", "beam steps (forward)")
    for name in ("_step", "_retire", "_compact"):
        stages.wrap(beam_search._Search, name, "beam steps (search)")
    stages.wrap(tracing, "final_state_pass", "final pass")
    stages.wrap(tracing, "label_answer", "labelling")
    for name in ("add", "add_error", "commit", "__exit__"):
        stages.wrap(TraceWriter, name, "writing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135M")
    parser.add_argument("--num-samples", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more run flags")
    args = parser.parse_args()
    stages = Stages()
    instrument(stages)
    from extraction.cli import main as extract

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp, stages.timing("rest"):
        status = extract(
            ["--model", args.model, "--dataset", "triviaqa", "--dataset-file", str(TRIVIAQA),
             "--num-samples", str(args.num_samples), "--batch-size", str(args.batch_size),
             "--output-dir", str(Path(tmp) / "store"), *args.extra]
        )  # fmt: skip
    assert status == 0
    total_wall = sum(stages.wall.values())
    total_cpu = sum(stages.cpu.values())
    print(f"\nload average before / after: {load} / {os.getloadavg()}")
    print(f"{args.model}, {args.num_samples} TriviaQA questions, batch {args.batch_size}")
    print("| stage | wall s | share | CPU s | share |\n|---|---:|---:|---:|---:|")
    for stage in sorted(stages.cpu, key=stages.cpu.get, reverse=True):
        wall, cpu = stages.wall[stage], stages.cpu[stage]
        shares = f"{wall / total_wall:.0%} | {cpu:.1f} | {cpu / total_cpu:.0%}"
        print(f"| {stage} | {wall:.1f} | {shares} |")
    print(f"| total | {total_wall:.1f} | | {total_cpu:.1f} | |")


if __name__ == "__main__":
    main()
