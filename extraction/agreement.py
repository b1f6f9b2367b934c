"""How much the K answers of each question agree, in a store of several generations per question
(what ``python -m extraction inspect`` reports). Read from the index and the consistency file:
no model, no shard."""

from __future__ import annotations

from dataclasses import dataclass

from common import UserError
from extraction.store import TraceStore


@dataclass(frozen=True)
class Agreement:
    """``label_agreement``: the share of labelled samples (generations 1..K-1) whose label is
    generation 0's; ``distinct_answers``: the mean number of different answers per question
    (case and surrounding spaces ignored; 1 = all K the same, K = all different);
    ``lexical_similarity``: the mean ROUGE-L F over the pairs of a question's answers, over the
    questions with a consistency record (``with_records``); None where nothing counts."""

    questions: int
    complete: int
    label_agreement: float | None
    distinct_answers: float | None
    lexical_similarity: float | None
    with_records: int


def agreement(store: TraceStore) -> Agreement:
    units = store.units
    generations = store.num_generations
    same = labelled = 0
    distinct, similarities = [], []
    for unit, trace_ids in units.items():
        rows = [store.rows[tid] for tid in trace_ids]
        distinct.append(len({row.generated_answer_clean.strip().lower() for row in rows}))
        first = rows[0]
        if first.generation == 0 and first.label is not None:
            for row in rows[1:]:
                if row.label is not None:
                    labelled += 1
                    same += row.label == first.label
        if len(trace_ids) > 1:
            try:
                matrix = store.consistency(unit).lexical_similarity
            except UserError:
                continue
            k = matrix.shape[0]
            similarities.append(float((matrix.sum() - matrix.diagonal().sum()) / (k * (k - 1))))
    return Agreement(
        questions=len(units),
        complete=sum(len(trace_ids) == generations for trace_ids in units.values()),
        label_agreement=same / labelled if labelled else None,
        distinct_answers=sum(distinct) / len(distinct) if distinct else None,
        lexical_similarity=sum(similarities) / len(similarities) if similarities else None,
        with_records=len(similarities),
    )
