"""Beam-search generation only, the same questions grouped four ways: CPU seconds and answers.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_generation_batching.py --model smollm2_135M \
        --num-samples 32 --batch-size 8 --threads 1

(a) batches in question order (the run's grouping before issue 24); (b) the same batch size with
the questions sorted by prompt length; (c) one batch of all of them; (d) sorted, twice the batch
size. CPU seconds (this process, all threads) count only this side's work on a shared machine.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HALLUGRAPH_SHARED_DATA", REPO.parent / "shared" / "data"))
TRIVIAQA = SHARED_DATA / "triviaqa" / "validation.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135M")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from extraction.generation import Decoding, generate_answers
    from extraction.models import load_model
    from extraction.prompts import SEED_PROMPT, build_prompt, encode_prompt
    from extraction.questions import load_questions

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, quantization="none")
    tokenizer = loaded.tokenizer
    questions = load_questions("triviaqa", str(TRIVIAQA), args.num_samples)
    prompts = [
        encode_prompt(build_prompt(q.question, tokenizer, SEED_PROMPT, False), tokenizer, False)
        for q in questions
    ]
    n, size = len(prompts), args.batch_size
    by_length = sorted(range(n), key=lambda i: len(prompts[i]))

    def chunks(order: list[int], width: int) -> list[list[int]]:
        return [order[i : i + width] for i in range(0, n, width)]

    groupings = {
        f"batches of {size}, question order": chunks(list(range(n)), size),
        f"batches of {size}, sorted by prompt length": chunks(by_length, size),
        f"one batch of {n}": [list(range(n))],
        f"batches of {2 * size}, sorted by prompt length": chunks(by_length, 2 * size),
    }
    print(f"load average before: {os.getloadavg()}; {args.model}, {n} questions, "
          f"{args.threads} thread(s)")  # fmt: skip
    print("| grouping | CPU s | wall s | answers as (a) |\n|---|---:|---:|---:|")
    reference = None
    for name, groups in groupings.items():
        answers: dict[int, list[int]] = {}
        cpu, wall = time.process_time(), time.perf_counter()
        for group in groups:
            found = generate_answers(
                loaded.model, tokenizer, [prompts[i] for i in group], Decoding()
            )
            answers.update({i: answer.answer_ids for i, answer in zip(group, found, strict=True)})
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        reference = reference or answers
        same = sum(answers[i] == reference[i] for i in range(n))
        print(f"| {name} | {cpu:.1f} | {wall:.1f} | {same}/{n} |", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
