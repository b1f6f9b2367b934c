"""How each label method labels a trace store, and how it agrees with hand judgements.

    python benchmarks/label_agreement.py STORE_DIR
    python benchmarks/label_agreement.py STORE_DIR --judgements tests/data/manual_judgements_X.jsonl
    python benchmarks/label_agreement.py STORE_DIR --make-sample OUT.jsonl [--sample 100 --seed 0]

(a) Labels every answer of the store with every method its gold answers allow (``alias_match``
    for TriviaQA; ``truthfulqa_diff_rougeL`` and ``truthfulqa_diff_embedding`` for TruthfulQA;
    ``bleurt`` needs the hub and is left out) and prints method, hallucination rate and n. The
    default method is marked with ``*``. ``alias_match`` is given the question (so an alias the
    answer copied out of the question does not count); ``alias_match[no-question]`` is the same
    rule without it, as a caller that passes no question gets.
(b) With ``--judgements``: re-labels each judged answer with each method, from the answer and gold
    answers recorded in the judgement file (not from the store), and prints accuracy, Cohen's
    kappa and the confusion counts against the hand judgement (1 = hallucinated). ``--show N``
    lists up to N disagreements per method.
(d) With ``--loo TruthfulQA.csv`` (no store): the leave-one-out check of the TruthfulQA back-ends
    on all 817 questions: each reference answer is labelled against the others of its question,
    and should come out truthful (0) when it is a correct reference and hallucinated (1) when it
    is an incorrect one. Embeddings of all references are computed once, in batches.
(c) With ``--make-sample OUT``: writes a seeded sample of ``--sample`` question ids (drawn from the
    sorted ids of the store's successful rows) with question, gold answers, answer and an empty
    ``judgement`` and ``note`` to fill in by hand. It shows no automatic label, so the judging is
    blind; it refuses to overwrite an existing file.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import csv
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import extraction.labels as labels_module
from extraction.label_methods import METHODS, _missing_fields, default_method, label_answer
from extraction.labels import LabelError
from extraction.store import TraceStore

# "truthfulqa_diff" is another name for one of the back-ends and "bleurt" needs the hub: both are
# left out of the per-method tables.
SKIPPED = {"truthfulqa_diff", "bleurt"}
DEFAULT_ALIAS = {"truthfulqa_diff": "truthfulqa_diff_embedding"}


NO_QUESTION = "[no-question]"


def applicable_methods(gold: dict) -> list[str]:
    methods = [m for m in METHODS if m not in SKIPPED and _missing_fields(gold, m) is None]
    return [v for m in methods for v in ([m, m + NO_QUESTION] if m == "alias_match" else [m])]


def run_method(answer: str, gold: dict, question: str, variant: str):
    """Label with one table variant: ``alias_match[no-question]`` leaves the question out."""
    if variant.endswith(NO_QUESTION):
        return label_answer(answer, gold, variant.removesuffix(NO_QUESTION))
    return label_answer(answer, gold, variant, question=question)


def resolved_default(gold: dict) -> str | None:
    method = default_method(gold)
    return DEFAULT_ALIAS.get(method, method)


def load_store_rows(store_dir: str) -> list[dict]:
    store = TraceStore(store_dir)
    return [store.rows[qid].to_json() for qid in store.question_ids]


def method_table(rows: list[dict]) -> list[dict]:
    """Per method: how many answers it labels, and the share it calls hallucinated."""
    results: dict[str, list[int]] = {}
    default = resolved_default(rows[0]["gold"]) if rows else None
    for row in rows:
        for method in applicable_methods(row["gold"]):
            label = run_method(row["generated_answer_clean"], row["gold"], row["question"], method)
            results.setdefault(method, []).append(label.label)
    return [
        {
            "method": method,
            "default": method == default,
            "hallucinated": sum(labels),
            "n": len(labels),
            "rate": sum(labels) / len(labels),
        }
        for method, labels in results.items()
    ]


def cohen_kappa(pairs: list[tuple[int, int]]) -> float:
    """Cohen's kappa of two binary raters; 1.0 when both give one constant label and agree."""
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    p_a = sum(a for a, _ in pairs) / n
    p_b = sum(b for _, b in pairs) / n
    expected = p_a * p_b + (1 - p_a) * (1 - p_b)
    if expected == 1:
        return 1.0
    return (observed - expected) / (1 - expected)


def read_judgements(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    unjudged = [r["question_id"] for r in rows if r.get("judgement") not in (0, 1)]
    if unjudged:
        raise SystemExit(f"{path}: {len(unjudged)} lines without a 0/1 judgement: {unjudged[:5]}")
    return rows


def agreement(judgements: list[dict], method: str) -> dict:
    """Agreement of one method with the hand judgements, labelling the recorded answer and gold.

    Confusion keys: ``method1_human1`` etc. (1 = hallucinated).
    """
    pairs, disagreements = [], []
    for row in judgements:
        label = run_method(row["answer"], row["gold"], row["question"], method)
        pairs.append((label.label, row["judgement"]))
        if label.label != row["judgement"]:
            disagreements.append({**row, "auto": label.label, "score": label.score})
    confusion = {
        f"method{m}_human{h}": sum(p == (m, h) for p in pairs) for m in (1, 0) for h in (1, 0)
    }
    agree = sum(a == b for a, b in pairs)
    nonempty = [p for p, row in zip(pairs, judgements, strict=True) if row["answer"].strip()]
    return {
        "nonempty_agree": sum(a == b for a, b in nonempty),
        "nonempty_n": len(nonempty),
        "method": method,
        "n": len(pairs),
        "agree": agree,
        "accuracy": agree / len(pairs),
        "kappa": cohen_kappa(pairs),
        "confusion": confusion,
        "disagreements": disagreements,
    }


def make_sample(rows: list[dict], out: Path, size: int, seed: int) -> None:
    if out.exists():
        raise SystemExit(f"{out} exists; it may hold judgements. Remove it first.")
    by_id = {row["question_id"]: row for row in rows}
    ids = random.Random(seed).sample(sorted(by_id), min(size, len(by_id)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for qid in ids:
            row = by_id[qid]
            line = {
                "question_id": qid,
                "question": row["question"],
                "gold": row["gold"],
                "answer": row["generated_answer_clean"],
                "judgement": None,
                "note": "",
            }
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {len(ids)} unjudged answers (seed {seed}) to {out}")


def truthfulqa_csv_gold(path: str | Path) -> list[dict]:
    """Gold answers of every row of TruthfulQA.csv, as ``python -m extraction`` reads them."""
    with Path(path).open(encoding="utf-8-sig") as f:
        records = list(csv.DictReader(f))

    def split(cell: str) -> list[str]:
        return [part.strip() for part in cell.split("; ") if part.strip()]

    return [
        {
            "best_answer": r["Best Answer"].strip(),
            "correct_answers": split(r["Correct Answers"]),
            "incorrect_answers": split(r["Incorrect Answers"]),
        }
        for r in records
    ]


def _cache_embeddings(texts: list[str]) -> None:
    """Swap in a similarity function that reads embeddings computed once, 64 texts a batch."""
    import torch

    tokenizer, model = labels_module._minilm()
    unique = list(dict.fromkeys(texts))
    vectors = {}
    for start in range(0, len(unique), 64):
        chunk = unique[start : start + 64]
        batch = tokenizer(chunk, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        vectors.update(zip(chunk, emb, strict=True))

    def cached(answer: str, refs: list[str]) -> list[float]:
        return [float(vectors[answer] @ vectors[ref]) for ref in refs]

    labels_module.embedding_similarities = cached


def leave_one_out(golds: list[dict], methods: list[str]) -> None:
    """Each reference labelled against the rest of its question's references."""
    cases = []  # (answer, gold without it, expected label)
    for gold in golds:
        correct = list(dict.fromkeys([gold["best_answer"], *gold["correct_answers"]]))
        incorrect = list(dict.fromkeys(gold["incorrect_answers"]))
        for ref in correct:
            rest = [r for r in correct if r != ref]
            if rest:
                cases.append((ref, {"correct_answers": rest, "incorrect_answers": incorrect}, 0))
        for ref in incorrect:
            rest = [r for r in incorrect if r != ref]
            if rest:
                cases.append((ref, {"correct_answers": correct, "incorrect_answers": rest}, 1))
    if any(m.endswith("embedding") for m in methods):
        texts = [labels_module.NO_COMMENT]
        for gold in golds:
            texts += [gold["best_answer"], *gold["correct_answers"], *gold["incorrect_answers"]]
        _cache_embeddings(texts)
    print(f"leave-one-out over {len(golds)} questions, {len(cases)} references")
    print(f"{'method':<40} {'correct kept 0':>19} {'incorrect kept 1':>19} {'balanced':>9}")
    polarity_label = labels_module.polarity_label
    for method in methods:
        for use_polarity in (True, False):
            # "[no-polarity]": the similarity rule alone, without the yes/no step.
            labels_module.polarity_label = polarity_label if use_polarity else lambda *_: None
            hits = {0: 0, 1: 0}
            totals = {0: 0, 1: 0}
            for answer, gold, expected in cases:
                totals[expected] += 1
                hits[expected] += label_answer(answer, gold, method).label == expected
            rates = {k: hits[k] / totals[k] for k in (0, 1)}
            name = method + ("" if use_polarity else "[no-polarity]")
            print(
                f"{name:<40} {hits[0]:>5}/{totals[0]} ({rates[0]:.1%}) "
                f"{hits[1]:>5}/{totals[1]} ({rates[1]:.1%}) {(rates[0] + rates[1]) / 2:>9.3f}"
            )
    labels_module.polarity_label = polarity_label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", nargs="?", help="trace store directory (read only)")
    parser.add_argument("--judgements", help="hand judgements JSONL (tests/data/manual_...)")
    parser.add_argument("--make-sample", metavar="OUT", help="write a blind sample to judge")
    parser.add_argument("--sample", type=int, default=100, help="sample size (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    parser.add_argument("--show", type=int, default=0, help="list up to N disagreements")
    parser.add_argument("--loo", metavar="CSV", help="leave-one-out check on TruthfulQA.csv")
    args = parser.parse_args(argv)

    if args.loo:
        leave_one_out(
            truthfulqa_csv_gold(args.loo), ["truthfulqa_diff_rougeL", "truthfulqa_diff_embedding"]
        )
        return 0
    if not args.store:
        parser.error("give a STORE_DIR, or --loo TruthfulQA.csv")

    rows = load_store_rows(args.store)
    if args.make_sample:
        make_sample(rows, Path(args.make_sample), args.sample, args.seed)
        return 0

    print(f"{args.store}: {len(rows)} answers   (* = default method)")
    print(f"{'method':<40} {'hallucinated':>12} {'rate':>7} {'n':>5}")
    for r in method_table(rows):
        name = r["method"] + (" *" if r["default"] else "")
        print(f"{name:<40} {r['hallucinated']:>12} {r['rate']:>7.1%} {r['n']:>5}")

    if args.judgements:
        judgements = read_judgements(args.judgements)
        human = sum(r["judgement"] for r in judgements)
        print(
            f"\n{args.judgements}: {len(judgements)} hand judgements, "
            f"{human} hallucinated ({human / len(judgements):.1%})"
        )
        print("confusion: m = method label, h = hand judgement (1 = hallucinated)")
        print(
            f"{'method':<40} {'agree':>8} {'accuracy':>8} {'kappa':>6}"
            f" {'m1h1':>5} {'m1h0':>5} {'m0h1':>5} {'m0h0':>5}  {'non-empty answers':>17}"
        )
        default = resolved_default(judgements[0]["gold"])
        for method in applicable_methods(judgements[0]["gold"]):
            try:
                a = agreement(judgements, method)
            except LabelError as err:
                print(f"{method:<40} {err}")
                continue
            c = a["confusion"]
            name = method + (" *" if method == default else "")
            print(
                f"{name:<40} {a['agree']:>4}/{a['n']:<3} {a['accuracy']:>8.1%} {a['kappa']:>6.3f}"
                f" {c['method1_human1']:>5} {c['method1_human0']:>5}"
                f" {c['method0_human1']:>5} {c['method0_human0']:>5}"
                f"  {a['nonempty_agree']:>4}/{a['nonempty_n']:<3} "
                f"({a['nonempty_agree'] / a['nonempty_n']:.1%})"
            )
            for d in a["disagreements"][: args.show]:
                print(
                    f"    {d['question_id']}: auto {d['auto']} (score {d['score']:.3f}) "
                    f"hand {d['judgement']}: {d['question']!r} -> {d['answer']!r}"
                    + (f"  [{d['note']}]" if d.get("note") else "")
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
