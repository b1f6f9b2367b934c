"""Recompute labels from a store's index (answers and gold answers), without the traced model:
with a label method, with an LLM judge, or from a judgement file."""

from __future__ import annotations

from pathlib import Path

from common import UserError
from extraction.label_methods import METHODS, label_answer
from extraction.labels import strip_prompt_echo
from extraction.llm_judge import METHOD as LLM_JUDGE
from extraction.models import resolve_source
from extraction.offline_model import PACKAGED_MODELS
from extraction.store import Label, TraceStore
from extraction.store.judgements import MatchResult, match_judgements, read_judgements


def check_options(method: str | None, from_file: str | None, judge_model: str | None) -> None:
    """One-line errors for options that do not go together, before any model or file is read."""
    if method is not None and method not in METHODS:
        raise UserError(f"unknown label method {method!r}; choose one of {', '.join(METHODS)}")
    if from_file and method:
        raise UserError("give either --method or --from_file, not both")
    if (method == LLM_JUDGE) != bool(judge_model):
        raise UserError(
            "--judge_model goes with --method llm_judge"
            if judge_model
            else "--method llm_judge needs --judge_model NAME (e.g. smollm2_135M or a hub id)"
        )
    if judge_model and judge_model not in PACKAGED_MODELS:
        resolve_source(judge_model)  # a name that cannot be a model: one line, nothing loaded


def _judge_labels(store: TraceStore, judge_model: str) -> dict[str, Label]:
    """The LLM judge's labels; the prompts are built (gold answers checked) before it loads."""
    from extraction.llm_judge import LLMJudge, judge_prompt

    prompts = [
        judge_prompt(row.question, row.gold, strip_prompt_echo(row.generated_answer_clean))
        for row in (store.rows[qid] for qid in store.question_ids)
    ]
    return dict(zip(store.question_ids, LLMJudge(judge_model).labels(prompts), strict=True))


def _label_fields(label: Label | None) -> dict:
    if label is None:  # an answer no judgement matched: no label rather than a guess
        return {"label": None, "label_method": "none", "label_score": None}
    return {"label": label.label, "label_method": label.method, "label_score": label.score}


def relabel(
    store_dir: str | Path,
    method: str | None = None,
    from_file: str | Path | None = None,
    judge_model: str | None = None,
) -> dict:
    """Rewrite the label fields of every answer of a store; returns the counts.

    ``from_file``: labels from a judgement file (:mod:`extraction.store.judgements`), matched by
    question id and answer hash; answers without a matching judgement get no label (``None``),
    and the result's ``"match"`` says what did not match. ``method="llm_judge"`` needs
    ``judge_model``. Otherwise ``method`` (default: each question's own) labels each answer.
    """
    check_options(method, str(from_file) if from_file else None, judge_model)
    store = TraceStore(store_dir)
    match: MatchResult | None = None
    if from_file:
        match = match_judgements(store.rows, read_judgements(from_file))
        labels = {qid: match.labels.get(qid) for qid in store.question_ids}
    elif method == LLM_JUDGE:
        labels = _judge_labels(store, judge_model)
    else:
        labels = {
            qid: label_answer(row.generated_answer_clean, row.gold, method, row.question)
            for qid, row in ((qid, store.rows[qid]) for qid in store.question_ids)
        }
    updates = {qid: _label_fields(label) for qid, label in labels.items()}
    store.rewrite_labels(updates)
    values = [fields["label"] for fields in updates.values()]
    return {
        "total": len(values),
        "hallucinated": values.count(1),
        "correct": values.count(0),
        "unlabelled": values.count(None),
        "match": match,
    }
