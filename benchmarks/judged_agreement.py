"""Agreement of every TruthfulQA label method with judged answers, with abstentions counted.

    python benchmarks/judged_agreement.py STORE_DIR [--judged FILE] [--show 20]
    python benchmarks/judged_agreement.py STORE_DIR --fit 0-399      # fit truthfulqa_combined
    python benchmarks/judged_agreement.py STORE_DIR --judge-model smollm2_135M  # + the LLM judge
    python benchmarks/judged_agreement.py --questions ../shared/data/truthfulqa/TruthfulQA.csv
    python benchmarks/judged_agreement.py --manual tests/data/manual_judgements_truthfulqa.jsonl

The judged answers are the store's answers matched to a judgement file by question id and answer
hash (default: the packaged judgements of the store's model and dataset); with ``--questions``,
the packaged SmolLM2 judgements' own answer texts and the questions of TruthfulQA.csv (no store);
or, with ``--manual``, the older hand-judgement files of tests/data (answer, gold and judgement).

For each method (the store's own labels, ``truthfulqa_diff_rougeL``, ``truthfulqa_diff_embedding``,
``truthfulqa_combined``, and ``llm_judge`` with ``--judge-model``) it prints, on all judged answers
and on the rows outside ``--fit``: how many it labels (the rest abstain), agreement and Cohen's
kappa on those, and the confusion counts (m = method, h = judged, 1 = hallucinated).

``--fit A-B`` grid-searches the weights and abstention margin of ``truthfulqa_combined`` on the
answers to TruthfulQA rows A..B only: the highest agreement with at most ``--max-abstain`` (15%)
abstentions there. It prints the best setting and its agreement on the other rows too; the
constants in ``extraction/truthfulqa_combined.py`` are copied from it by hand.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from label_agreement import _cache_embeddings, cohen_kappa

from extraction.label_methods import label_answer
from extraction.labels import (
    NO_COMMENT,
    correct_references,
    gold_strings,
    strip_prompt_echo,
)
from extraction.store import TraceStore
from extraction.store.judgements import (
    match_judgements,
    packaged_judgements,
    read_judgements,
)
from extraction.truthfulqa_combined import Params, decide, evidence

METHODS = ("truthfulqa_diff_rougeL", "truthfulqa_diff_embedding", "truthfulqa_combined")


@dataclass
class Item:
    question_id: str
    question: str
    gold: dict
    answer: str
    judged: int
    reason: str
    stored: int | None = None  # the store's own label

    @property
    def row(self) -> int:
        return int(self.question_id.rsplit("_", 1)[1])


def store_items(store_dir: str, judged: str | None) -> tuple[list[Item], str]:
    store = TraceStore(store_dir)
    settings = store.manifest.settings
    path = judged or packaged_judgements(settings.model, settings.dataset)
    judgements = read_judgements(path)
    match = match_judgements(store.rows, judgements)
    for line in match.report():
        print(line)
    by_id = {j.question_id: j for j in judgements if j.question_id in match.labels}
    items = []
    for qid in store.question_ids:
        if qid not in match.labels:
            continue
        row = store.rows[qid]
        items.append(
            Item(
                qid,
                row.question,
                row.gold,
                row.generated_answer_clean,
                match.labels[qid].label,
                by_id[qid].reason,
                row.label,
            )
        )
    return items, str(path)


def file_items(judged: str, dataset_file: str) -> list[Item]:
    """Judged answers from a judgement file that holds the answer texts (the packaged ones), with
    the question and gold answers of the dataset file: no store needed."""
    from extraction.questions import load_questions

    questions = {q.question_id: q for q in load_questions("truthfulqa", dataset_file)}
    items = []
    for j in read_judgements(judged):
        if j.answer is None:
            raise SystemExit(f"{judged}: {j.question_id} has no answer text; pass the store")
        q = questions[j.question_id]
        items.append(Item(j.question_id, q.question, q.gold, j.answer, j.label, j.reason))
    return items


def manual_items(path: str) -> list[Item]:
    with Path(path).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [
        Item(r["question_id"], r["question"], r["gold"], r["answer"], r["judgement"], r["note"])
        for r in rows
    ]


def stored_labels(store_dir: str, items: list[Item]) -> tuple[str, list, list]:
    """The labels and label scores a (relabelled) copy of the store holds for the judged answers,
    and its label method; an answer whose text differs from the judged one is unlabelled."""
    rows = TraceStore(store_dir).rows
    values, scores_, methods = [], [], set()
    for item in items:
        row = rows.get(item.question_id)
        same = row is not None and row.generated_answer_clean == item.answer
        values.append(row.label if same else None)
        scores_.append(row.label_score if same else None)
        if same:
            methods.add(row.label_method)
    return ",".join(sorted(str(m) for m in methods)), values, scores_


def score_auroc(scores_: list, items: list[Item]) -> tuple[float, int]:
    """AUROC of a label score (higher = more likely hallucinated) against the judged labels."""
    from sklearn.metrics import roc_auc_score

    pairs = [(s, item.judged) for s, item in zip(scores_, items, strict=True) if s is not None]
    return roc_auc_score([j for _, j in pairs], [s for s, _ in pairs]), len(pairs)


def cache_all_embeddings(items: list[Item]) -> None:
    texts = [NO_COMMENT]
    for item in items:
        texts.append(strip_prompt_echo(item.answer))
        texts += correct_references(item.gold) + gold_strings(item.gold, "incorrect_answers")
    _cache_embeddings(texts)


def scores(pairs: list[tuple[int | None, int]]) -> dict:
    """Agreement on the labelled pairs; ``pairs`` = (method label or None, judged label)."""
    labelled = [(m, h) for m, h in pairs if m is not None]
    n = len(labelled)
    agree = sum(m == h for m, h in labelled)
    return {
        "n": len(pairs),
        "labelled": n,
        "abstain": 1 - n / len(pairs) if pairs else 0.0,
        "agree": agree,
        "accuracy": agree / n if n else float("nan"),
        "kappa": cohen_kappa(labelled) if n else float("nan"),
        "confusion": [sum(p == (m, h) for p in labelled) for m in (1, 0) for h in (1, 0)],
        "hallucinated_rate": sum(m for m, _ in labelled) / n if n else float("nan"),
    }


def print_table(title: str, results: dict[str, dict]) -> None:
    """A markdown table (m = method, h = judged, 1 = hallucinated; rate = the method's
    hallucination rate on the answers it labels)."""
    print(f"\n{title}\n")
    print(
        "| labels | labelled | abstain | agree | agreement | κ | m1 h1 | m1 h0 | m0 h1 | m0 h0 "
        "| hallucinated |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results.items():
        c = s["confusion"]
        print(
            f"| {name} | {s['labelled']}/{s['n']} | {s['abstain']:.1%} "
            f"| {s['agree']}/{s['labelled']} | {s['accuracy']:.1%} | {s['kappa']:.3f} "
            f"| {c[0]} | {c[1]} | {c[2]} | {c[3]} | {s['hallucinated_rate']:.1%} |"
        )


def fit(evidences: list, items: list[Item], rows: range, max_abstain: float) -> Params:
    """The grid point with the best agreement on ``rows`` at <= ``max_abstain`` abstentions."""
    inside = [i for i, item in enumerate(items) if item.row in rows]
    grid = itertools.product(
        (0.0, 0.25, 0.5, 1.0, 2.0),  # w_rouge
        (0.0, 0.05, 0.1, 0.2, 0.4),  # w_contradiction
        [m / 100 for m in range(0, 21)],  # abstain_margin
    )
    best, best_key = Params(), (-1.0, 0.0)
    for w_rouge, w_contradiction, margin in grid:
        params = Params(1.0, w_rouge, w_contradiction, margin)
        s = scores([(decide(evidences[i], params).label, items[i].judged) for i in inside])
        if s["abstain"] <= max_abstain and (s["accuracy"], -s["abstain"]) > best_key:
            best, best_key = params, (s["accuracy"], -s["abstain"])
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", nargs="?", help="trace store directory (read only)")
    parser.add_argument("--judged", help="judgement file (default: the packaged one)")
    parser.add_argument("--manual", help="a tests/data/manual_judgements_*.jsonl file instead")
    parser.add_argument(
        "--questions",
        metavar="CSV",
        help="no store: the packaged judgements (or --judged) with this TruthfulQA.csv",
    )
    parser.add_argument("--fit", metavar="A-B", help="fit truthfulqa_combined on rows A..B")
    parser.add_argument("--max-abstain", type=float, default=0.15)
    parser.add_argument("--judge-model", help="also run llm_judge with this model")
    parser.add_argument("--show", type=int, default=0, help="list N disagreements per method")
    parser.add_argument(
        "--compare-stores",
        nargs="*",
        default=[],
        metavar="DIR",
        help="relabelled copies of the store (e.g. by llm_judge): their labels as more columns",
    )
    args = parser.parse_args(argv)
    if args.manual:
        items, source = manual_items(args.manual), args.manual
    elif args.questions:
        source = args.judged or str(packaged_judgements("smollm2_135M", "truthfulqa"))
        items = file_items(source, args.questions)
    elif args.store:
        items, source = store_items(args.store, args.judged)
    else:
        parser.error("give a STORE_DIR or --manual FILE")
    judged_1 = sum(item.judged for item in items)
    print(f"{source}: {len(items)} judged answers, {judged_1} hallucinated")
    labels: dict[str, list] = {"judged (reference)": [item.judged for item in items]}

    cache_all_embeddings(items)
    evidences = [
        evidence(strip_prompt_echo(item.answer), item.gold, item.question) for item in items
    ]
    params = Params()
    if args.fit:
        low, high = (int(x) for x in args.fit.split("-"))
        params = fit(evidences, items, range(low, high + 1), args.max_abstain)
        print(f"fitted on rows {args.fit}: {params}")

    if any(item.stored is not None for item in items):
        labels["stored labels"] = [item.stored for item in items]
    for method in METHODS[:2]:
        labels[method] = [label_answer(item.answer, item.gold, method).label for item in items]
    labels["truthfulqa_combined"] = [decide(ev, params).label for ev in evidences]
    for other in args.compare_stores:
        name, values, other_scores = stored_labels(other, items)
        labels[f"{name} ({Path(other).name})"] = values
        auroc, n = score_auroc(other_scores, items)
        print(f"{name} ({other}): label_score AUROC against the judged labels {auroc:.3f} (n={n})")
    if args.judge_model:
        from extraction.llm_judge import LLMJudge, judge_prompt

        prompts = [
            judge_prompt(item.question, item.gold, strip_prompt_echo(item.answer)) for item in items
        ]
        labels[f"llm_judge[{args.judge_model}]"] = [
            label.label for label in LLMJudge(args.judge_model).labels(prompts)
        ]

    subsets = {"all judged answers": range(0, 10**6)}
    if args.fit:
        subsets = {
            f"fit rows {args.fit}": range(low, high + 1),
            f"held-out rows (outside {args.fit})": [
                item.row for item in items if not low <= item.row <= high
            ],
            "all judged answers": range(0, 10**6),
        }
    for title, rows in subsets.items():
        chosen = [i for i, item in enumerate(items) if item.row in rows]
        results = {
            name: scores([(values[i], items[i].judged) for i in chosen])
            for name, values in labels.items()
        }
        print_table(f"{title}: {len(chosen)} answers", results)
    for name, values in labels.items():
        misses = [(v, item) for v, item in zip(values, items, strict=True) if v is not None]
        misses = [(v, item) for v, item in misses if v != item.judged]
        if args.show and misses:
            print(f"\n{name}: {len(misses)} disagreements, {args.show} spread over the rows\n")
            print("| question | answer | label | judged | judge's reason |\n|---|---|---|---|---|")
        for value, item in misses[:: max(1, len(misses) // max(args.show, 1))][: args.show]:
            cells = (item.question, item.answer, value, item.judged, item.reason)
            print("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
