"""Computing a store's per-question consistency records (several generations per question).

Everything is computed from the store itself (answers from the index, hidden states from the
shards, MiniLM embeddings): no traced model is needed, so a record missing or out of date (a
crash, a ``--retry_errors`` that added a generation) is simply computed again by the next run.
The store only keeps the file (:mod:`extraction.store.consistency`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from extraction.labels import rougeL_similarities, sentence_embeddings
from extraction.store import Consistency, TraceStore
from extraction.store.consistency import CONSISTENCY, read_consistency, write_consistency


def eigen_block(num_layers: int, stored_blocks: Iterable[int]) -> int:
    """The block whose output at the last token is EigenScore's sentence embedding: the middle
    one, hidden-state index ``(num_layers + 1) // 2`` as INSIDE's code takes it (block 14 of
    SmolLM2's 30), or the stored block nearest to it (the lower on a tie) when ``--layers`` left
    it out."""
    middle = (num_layers + 1) // 2 - 1
    return min(stored_blocks, key=lambda block: (abs(block - middle), block))


def sync_consistency(
    store: TraceStore, question_ids: Iterable[str], name: str = CONSISTENCY
) -> int:
    """Bring the records of ``question_ids`` (those with an ok trace) in the file ``name`` of
    ``store`` (a :class:`~extraction.store.TraceStore`) up to date with its traces; the number
    of records computed. A record whose trace ids still match the store's is kept as it is."""
    path = store.root / name
    records = read_consistency(path) if path.exists() else {}
    units = store.units
    stale = [
        qid
        for qid in question_ids
        if qid in units and (qid not in records or records[qid].trace_ids != tuple(units[qid]))
    ]
    if not stale:
        return 0
    block = eigen_block(store.manifest.model.num_layers, store.stored_blocks)
    for qid in stale:
        records[qid] = compute_consistency(store, qid, units[qid], block)
    write_consistency(path, records)
    return len(stale)


def compute_consistency(
    store: TraceStore, question_id: str, trace_ids: list[str], block: int
) -> Consistency:
    """One question's record from its stored traces."""
    answers = [store.rows[tid].generated_answer_clean for tid in trace_ids]
    lexical = torch.tensor([rougeL_similarities(answer, answers) for answer in answers])
    hidden = [store.resid_post(tid, block)[-1].float() for tid in trace_ids]
    return Consistency(
        question_id=question_id,
        trace_ids=tuple(trace_ids),
        answers=tuple(answers),
        answer_embeddings=sentence_embeddings(answers).float(),
        lexical_similarity=lexical.float(),
        eigen_hidden=torch.stack(hidden),
        eigen_block=block,
    )
