"""Recompute labels from a store's index (answers and gold answers), without the model."""

from __future__ import annotations

from pathlib import Path

from extraction.labels import label_answer
from extraction.store import TraceStore


def relabel(store_dir: str | Path, method: str | None = None) -> dict[str, int]:
    store = TraceStore(store_dir)
    updates = {}
    for qid in store.question_ids:
        row = store.rows[qid]
        label = label_answer(row["generated_answer_clean"], row["gold"], method, row["question"])
        updates[qid] = {
            "label": label.label,
            "label_method": label.method,
            "label_score": label.score,
        }
    store.rewrite_labels(updates)
    values = [fields["label"] for fields in updates.values()]
    return {
        "total": len(values),
        "hallucinated": values.count(1),
        "correct": values.count(0),
        "unlabelled": values.count(None),
    }
