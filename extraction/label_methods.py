"""Label methods by name: :data:`METHODS`, the default for some gold answers, and
:func:`label_answer`, which checks that the gold answers suit the method and runs it.

The methods themselves are :mod:`extraction.labels` and :mod:`extraction.truthfulqa_combined`.
"""

from __future__ import annotations

from collections.abc import Callable

from extraction.labels import (
    Label,
    LabelError,
    alias_match,
    alias_tokens,
    bleurt,
    gold_strings,
    strip_prompt_echo,
    truthfulqa_diff_embedding,
    truthfulqa_diff_rougeL,
)
from extraction.truthfulqa_combined import truthfulqa_combined


def _llm_judge(answer: str, gold: dict) -> Label:
    raise LabelError(
        "llm_judge needs a judge model: label a finished store with "
        "`python -m extraction label DIR --method llm_judge --judge_model NAME`"
    )


_METHODS: dict[str, Callable[[str, dict], Label]] = {
    "alias_match": alias_match,
    # Embeddings rather than ROUGE-L: they can judge a paraphrase that shares no word with any
    # reference, which ROUGE-L ties at 0 and so calls hallucinated. Evidence in docs/LABELS.md.
    "truthfulqa_diff": truthfulqa_diff_embedding,
    "truthfulqa_diff_rougeL": truthfulqa_diff_rougeL,
    "truthfulqa_diff_embedding": truthfulqa_diff_embedding,
    "truthfulqa_combined": truthfulqa_combined,
    "bleurt": bleurt,
    "llm_judge": _llm_judge,
}
# Methods that read the question as well as the answer and the gold answers.
_WITH_QUESTION = {"alias_match": alias_match, "truthfulqa_combined": truthfulqa_combined}
METHODS: tuple[str, ...] = tuple(_METHODS)
# Another name for a method: its labels record the method's own name.
_ALIASES = {"truthfulqa_diff": "truthfulqa_diff_embedding"}


def recorded_method(method: str) -> str:
    """The ``label_method`` that labels made with ``method`` carry."""
    return _ALIASES.get(method, method)


def _missing_fields(gold: dict, method: str) -> str | None:
    """What the gold answers lack for this method, or None when they suffice."""
    if method == "alias_match":
        return None if alias_tokens(gold) else "aliases or normalized_aliases"
    has_correct = bool(gold_strings(gold, "correct_answers", "best_answer"))
    if method == "bleurt":
        return None if has_correct else "correct_answers or best_answer"
    if has_correct and gold_strings(gold, "incorrect_answers"):
        return None
    return "correct_answers or best_answer, and incorrect_answers"


def default_method(gold: dict) -> str | None:
    """alias_match for aliases (TriviaQA), truthfulqa_diff for correct and incorrect answers
    (TruthfulQA), else None."""
    for method in ("alias_match", "truthfulqa_diff"):
        if _missing_fields(gold, method) is None:
            return method
    return None


def label_answer(
    answer: str, gold: dict, method: str | None = None, question: str | None = None
) -> Label:
    """Label one answer against its gold answers; ``method=None`` picks :func:`default_method`.

    With no usable gold answers and no method asked for, the label is ``Label(None, "none", None)``.
    ``question``, when given, keeps ``alias_match`` from accepting an alias the answer merely
    copied out of the question, and lets ``truthfulqa_combined`` see a repeated question; the
    other methods do not use it.
    """
    if method is None:
        method = default_method(gold)
        if method is None:
            return Label(None, "none", None)
    if method not in _METHODS:
        raise LabelError(f"unknown label method {method!r}; choose one of {', '.join(METHODS)}")
    if missing := _missing_fields(gold, method):
        choices = [m for m in METHODS if _missing_fields(gold, m) is None]
        raise LabelError(
            f"label method {method!r} needs gold {missing}; "
            + (f"these gold answers fit: {', '.join(choices)}" if choices else "add them")
        )
    answer = strip_prompt_echo(answer)
    if method in _WITH_QUESTION:
        return _WITH_QUESTION[method](answer, gold, question)
    return _METHODS[method](answer, gold)
