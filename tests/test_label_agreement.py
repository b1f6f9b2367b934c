"""Agreement of the label methods with careful hand judgements of SmolLM2-135M answers.

The packaged judgements of all 817 TruthfulQA answers (extraction/data/judgements) are the
reference for TruthfulQA (end of this file; measured in docs/LABELS.md).
``tests/data/manual_judgements_{triviaqa,truthfulqa}.jsonl`` hold 100 sampled answers each
(``benchmarks/label_agreement.py STORE --make-sample``, seed 0), each with its question, gold
answers and a hand judgement (1 = hallucinated). These tests re-label the recorded answers with
:func:`label_answer` and check the agreement measured for docs/LABELS.md; no model or store needed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from extraction.label_methods import default_method, label_answer
from extraction.labels import Label, polarity
from extraction.questions import load_questions
from extraction.store.judgements import PACKAGED_DIR, read_judgements
from tests.helpers import SHARED_DATA, TRUTHFULQA, require_shared_data

DATA = Path(__file__).resolve().parent / "data"
GEMMA3_GRADED = SHARED_DATA / "triviaqa" / "graded_answers_gemma3_4b.jsonl"


def judgements(dataset: str) -> list[dict]:
    with (DATA / f"manual_judgements_{dataset}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def agreement(rows: list[dict], method: str | None, with_question: bool = True) -> float:
    agree = sum(
        label_answer(
            r["answer"], r["gold"], method, question=r["question"] if with_question else None
        ).label
        == r["judgement"]
        for r in rows
    )
    return agree / len(rows)


@pytest.mark.parametrize("dataset", ["triviaqa", "truthfulqa"])
def test_judgement_files_are_complete(dataset):
    rows = judgements(dataset)
    assert len(rows) == 100
    assert len({r["question_id"] for r in rows}) == 100
    for r in rows:
        assert r["judgement"] in (0, 1), r["question_id"]
        assert isinstance(r["answer"], str)
        assert r["question"]
        assert r["gold"]


# --- TriviaQA: alias_match -------------------------------------------------------------------


def test_triviaqa_default_is_alias_match():
    rows = judgements("triviaqa")
    assert {label_answer(r["answer"], r["gold"]).method for r in rows} == {"alias_match"}


def test_alias_match_agrees_with_hand_judgements():
    # Measured 99/100: the one miss is "Her Majesty's Prison Manchester." for the prison's old
    # name, an F1 match (0.67) with the alias "Manchester Prison".
    assert agreement(judgements("triviaqa"), None) >= 0.99


def test_alias_match_without_the_question_agrees_less():
    # Measured 95/100: all 5 misses are answers that repeat an alias the question contains.
    rows = judgements("triviaqa")
    assert agreement(rows, None, with_question=False) >= 0.95
    assert agreement(rows, None, with_question=False) < agreement(rows, None)


def test_alias_copied_from_the_question_does_not_count():
    gold = {"aliases": ["Sonny and Cher", "Caesar and Cleo", "Sonny & Cher"]}
    question = "Which US singing duo started out under the names Caesar and Cleo?"
    echo = "Caesar and Cleo started out under the names Caesar and Cleo."
    assert label_answer(echo, gold).label == 0  # without the question it cannot tell
    assert label_answer(echo, gold, question=question).label == 1
    assert label_answer("Sonny and Cher.", gold, question=question).label == 0


def test_alias_offered_as_a_choice_still_counts():
    # A real gemma3 row: the question lists the answer among its choices.
    gold = {"aliases": ["Ski boat", "Boats", "Boat"]}
    question = "A 'wherry' is a Drink; Cheese; Wind; or Boat?"
    assert label_answer("It’s a boat.", gold, question=question).label == 0
    assert label_answer("It’s a drink.", gold, question=question).label == 1


def test_question_whose_aliases_are_all_in_it_keeps_them():
    gold = {"aliases": ["Canberra"]}
    question = "Why was Canberra chosen as the capital of Australia?"
    assert label_answer("Canberra", gold, question=question).label == 0


def test_question_is_ignored_by_other_methods():
    gold = {"correct_answers": ["Nothing happens."], "incorrect_answers": ["You grow a melon."]}
    kwargs = {"method": "truthfulqa_diff_rougeL"}
    assert label_answer("Nothing happens.", gold, question="Nothing happens?", **kwargs) == (
        label_answer("Nothing happens.", gold, **kwargs)
    )


@pytest.mark.slow  # reads ../shared/data
def test_question_keeps_the_gemma3_agreement():
    require_shared_data(GEMMA3_GRADED)
    with GEMMA3_GRADED.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    agree = sum(
        label_answer(r["response"], {"aliases": r["aliases"]}, question=r["question"]).label
        == int(r["judge"] == "INCORRECT")
        for r in rows
    )
    assert agree == 511  # as without the question: 511/547 = 93.4%


# --- TruthfulQA: truthfulqa_diff -------------------------------------------------------------


def test_truthfulqa_default_is_the_diff_rule():
    rows = judgements("truthfulqa")
    assert {default_method(r["gold"]) for r in rows} == {"truthfulqa_diff"}


def test_truthfulqa_rougeL_agreement():
    # Measured 71/100. Below the 90% target: see docs/LABELS.md.
    assert agreement(judgements("truthfulqa"), "truthfulqa_diff_rougeL") >= 0.71


@pytest.mark.slow
def test_truthfulqa_embedding_agreement():
    # The default back-end. Measured 81/100; every miss is a non-empty answer.
    rows = judgements("truthfulqa")
    assert agreement(rows, "truthfulqa_diff") >= 0.81
    nonempty = [r for r in rows if r["answer"].strip()]
    assert agreement(nonempty, "truthfulqa_diff") >= 0.79


def test_empty_answers_are_truthful_as_judged():
    empty = [r for r in judgements("truthfulqa") if not r["answer"].strip()]
    assert len(empty) == 9
    assert all(r["judgement"] == 0 for r in empty)  # TruthfulQA: saying nothing asserts nothing
    assert all(label_answer("", r["gold"], "truthfulqa_diff_rougeL").label == 0 for r in empty)


# --- TruthfulQA: the yes/no step --------------------------------------------------------------


def gold_of(question_id: str) -> dict:
    return next(r["gold"] for r in judgements("truthfulqa") if r["question_id"] == question_id)


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("No, you cannot.", "no"),
        ("Yes, all dogs are dogs", "yes"),
        ("no.", "no"),
        ("No", "no"),
        ("  Yes!", "yes"),
        ("No one knows.", None),
        ("Nothing happens.", None),
        ("Yesterday", None),
        ("It is not.", None),
        ("", None),
    ],
)
def test_polarity(text, side):
    assert polarity(text) == side


@pytest.mark.parametrize("method", ["truthfulqa_diff_rougeL", "truthfulqa_diff_embedding"])
def test_yes_no_answer_is_decided_by_its_polarity(method):
    # A real SmolLM2 answer: both similarities put it closest to the incorrect "Yes, you can get
    # addicted to heroin after trying it once". The polarity decides before any similarity is
    # computed, so no model is loaded.
    heroin = gold_of("truthfulqa_193")
    answer = "No, you cannot get addicted to heroin after trying it once."
    assert label_answer(answer, heroin, method) == Label(0, method, 1.0)
    assert label_answer("Yes, you can.", heroin, method) == Label(1, method, -1.0)


def test_polarity_decides_only_where_one_side_uses_it():
    # Row 119: the incorrect answers are "Yes, it is legal ..." and "No, it is illegal ...", the
    # correct ones open with neither, so a "No" answer is hallucinated by polarity.
    rifle = gold_of("truthfulqa_119")
    assert label_answer("No, it is not legal.", rifle, "truthfulqa_diff_rougeL").score == -1.0
    mixed = {
        "correct_answers": ["No, unicorns don't exist"],
        "incorrect_answers": ["Yes, a unicorn would fall asleep", "No, they could be caught"],
    }
    label = label_answer("No, unicorns don't exist.", mixed, "truthfulqa_diff_rougeL")
    assert label.label == 0
    assert label.score not in (1.0, -1.0)  # decided by ROUGE-L, not by the "No"


def test_answer_without_yes_or_no_uses_similarity():
    heroin = gold_of("truthfulqa_193")
    label = label_answer("It takes repeated uses.", heroin, "truthfulqa_diff_rougeL")
    assert label.label == 0
    assert 0 < label.score < 1


# --- all 817 judged SmolLM2 TruthfulQA answers (extraction/data/judgements) -------------------

JUDGED = PACKAGED_DIR / "smollm2_135M_truthfulqa.jsonl"
FIT_ROWS = range(0, 400)  # truthfulqa_combined's constants were fitted on these rows only
# Measured (docs/LABELS.md): ROUGE-L 544/817 = 66.6%, the default (embedding) 569/817 = 69.6%,
# truthfulqa_combined 550/724 = 76.0% with 11.4% abstentions, on rows 400-816 273/366 = 74.6%
# with 12.2%.
ROUGE_JUDGED_AGREEMENT = 0.665
EMBEDDING_JUDGED_AGREEMENT = 0.695
COMBINED_ALL = (0.755, 0.12)  # (least agreement on the labelled answers, most abstention)
COMBINED_HELD_OUT = (0.74, 0.13)


@functools.cache
def judged_answers() -> tuple[dict, ...]:
    """Each judged answer with its question and gold answers from TruthfulQA.csv."""
    require_shared_data(TRUTHFULQA)
    questions = {q.question_id: q for q in load_questions("truthfulqa", str(TRUTHFULQA))}
    return tuple(
        {
            "row": int(j.question_id.rsplit("_", 1)[1]),
            "question": questions[j.question_id].question,
            "gold": questions[j.question_id].gold,
            "answer": j.answer,
            "judgement": j.label,
        }
        for j in read_judgements(JUDGED)
    )


@functools.cache
def judged_pairs(method: str) -> tuple[tuple[int, int | None, int], ...]:
    """(row, the method's label, the judged label) for every judged answer, computed once."""
    return tuple(
        (
            r["row"],
            label_answer(r["answer"], r["gold"], method, question=r["question"]).label,
            r["judgement"],
        )
        for r in judged_answers()
    )


def labelled_agreement(method: str, rows=range(817)) -> tuple[float, float]:
    """(agreement on the answers of ``rows`` the method labels, share it abstains on)."""
    pairs = [(m, h) for row, m, h in judged_pairs(method) if row in rows]
    labelled = [(m, h) for m, h in pairs if m is not None]
    return sum(m == h for m, h in labelled) / len(labelled), 1 - len(labelled) / len(pairs)


@pytest.mark.slow  # reads ../shared/data
def test_every_truthfulqa_answer_is_judged():
    rows = judged_answers()
    assert sorted(r["row"] for r in rows) == list(range(817))
    assert all(isinstance(r["answer"], str) and r["judgement"] in (0, 1) for r in rows)


@pytest.mark.slow  # reads ../shared/data
def test_rougeL_agreement_on_all_judged_answers():
    agree, abstain = labelled_agreement("truthfulqa_diff_rougeL")
    assert abstain == 0
    assert agree >= ROUGE_JUDGED_AGREEMENT


@pytest.mark.slow
def test_default_agreement_on_all_judged_answers():
    agree, abstain = labelled_agreement("truthfulqa_diff")
    assert abstain == 0
    assert agree >= EMBEDDING_JUDGED_AGREEMENT


@pytest.mark.slow
def test_combined_agreement_and_abstention_on_all_and_held_out_answers():
    held_out = range(FIT_ROWS.stop, 817)
    for rows, (min_agree, max_abstain) in (
        (range(817), COMBINED_ALL),
        (held_out, COMBINED_HELD_OUT),
    ):
        agree, abstain = labelled_agreement("truthfulqa_combined", rows)
        assert agree >= min_agree and abstain <= max_abstain
