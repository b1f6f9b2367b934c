"""Accuracy of a fact-question store by relation and popularity rank band (docs/EXTRACTION.md,
"Fact questions"): the numbers the default mix is chosen from.

    python benchmarks/fact_pilot.py /work/stores/facts_pilot [--show N]

Labels are recomputed with ``alias_match`` against the generator's current gold (so a pilot made
before a gold fix is read with the fix); the rank is the subject's place in its relation's pool,
most popular first. ``--show N`` prints N random labelled answers (seed 0) for a hand audit.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import random
from collections import defaultdict

from extraction.facts import RELATIONS, relation_pool
from extraction.label_methods import label_answer
from extraction.store import TraceStore

BANDS = ((1, 100), (101, 1000), (1001, None))


def _band(rank: int) -> str:
    for low, high in BANDS:
        if high is None or rank <= high:
            return f"{low}-{high or ''}"
    raise AssertionError(rank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--show", type=int, default=0)
    args = parser.parse_args()
    questions, ranks = {}, {}
    for name in RELATIONS:
        for rank, question in enumerate(relation_pool(name), start=1):
            questions[question.question_id] = question
            ranks[question.question_id] = rank
    store = TraceStore(args.store)
    rows = [store.rows[qid] for qid in store.question_ids if store.rows[qid].ok]
    dropped = [row.question_id for row in rows if row.question_id not in questions]
    if dropped:
        print(f"{len(dropped)} answered questions are no longer generated: {', '.join(dropped)}")
    rows = [row for row in rows if row.question_id in questions]
    cells: dict[tuple[str, str], list[int]] = defaultdict(list)
    labelled = []
    for row in rows:
        question = questions[row.question_id]
        gold = {"aliases": list(question.aliases), "distractors": list(question.distractors)}
        label = label_answer(row.generated_answer_clean, gold, "alias_match", row.question)
        band = _band(ranks[row.question_id])
        for key in ((question.relation, band), (question.relation, "all"), ("all", band)):
            cells[key].append(label.label)
        cells[("all", "all")].append(label.label)
        labelled.append((row, question, label))
    bands = [_band(low) for low, _ in BANDS] + ["all"]
    print("| relation | " + " | ".join(f"rank {b}" for b in bands) + " |")
    print("|---" * (len(bands) + 1) + "|")
    for relation in [*RELATIONS, "all"]:
        shown = []
        for band in bands:
            labels = cells.get((relation, band), [])
            correct = labels.count(0)
            shown.append(f"{correct}/{len(labels)}" if labels else "")
        print(f"| {relation} | " + " | ".join(shown) + " |")
    for row, question, label in random.Random(0).sample(labelled, min(args.show, len(labelled))):
        print(
            f"{label.label} {question.relation} | {row.question} -> "
            f"{row.generated_answer_clean!r} | gold {' / '.join(question.aliases[:4])}"
        )


if __name__ == "__main__":
    main()
