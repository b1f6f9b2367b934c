"""The per-question consistency file of a store with several generations per question.

``consistency.safetensors`` in the store root (``consistency.rank{r}.safetensors`` for each rank
of a multi-process run) holds one :class:`~extraction.store.contract.Consistency` per question:
tensors ``{question_id}/answer_embeddings``, ``/lexical_similarity`` and ``/eigen_hidden``, and
in the header the trace ids, answers and eigen block of each. Everything in it is computed from
the store itself (answers from the index, hidden states from the shards, MiniLM embeddings): no
traced model is needed, so a record missing or out of date (a crash, a ``--retry_errors`` that
added a generation) is simply computed again by the next run. The file is rewritten atomically
after each batch. Each record's header entry holds the sha256 of its tensors, checked when read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from extraction.errors import UserError
from extraction.files import atomic_path
from extraction.store.contract import Consistency
from extraction.store.integrity import tensors_sha256
from extraction.store.layout import save_tensors

CONSISTENCY = "consistency.safetensors"
CONSISTENCY_FORMAT = "hallugraph-consistency/1"
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_TENSORS = ("answer_embeddings", "lexical_similarity", "eigen_hidden")


def consistency_name(rank: int | None = None) -> str:
    """The file of a single-process run (``rank`` None) or of one rank of a launcher run."""
    return CONSISTENCY if rank is None else f"consistency.rank{rank}.safetensors"


def consistency_files(root: Path) -> list[Path]:
    """Every consistency file of the store at ``root`` (one per rank that wrote)."""
    return sorted(root.glob("consistency*.safetensors"))


def eigen_block(num_layers: int, stored_blocks: Iterable[int]) -> int:
    """The block whose output at the last token is EigenScore's sentence embedding: the middle
    one, hidden-state index ``(num_layers + 1) // 2`` as INSIDE's code takes it (block 14 of
    SmolLM2's 30), or the stored block nearest to it (the lower on a tie) when ``--layers`` left
    it out."""
    middle = (num_layers + 1) // 2 - 1
    return min(stored_blocks, key=lambda block: (abs(block - middle), block))


def read_consistency(path: Path) -> dict[str, Consistency]:
    """Every record of one consistency file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != CONSISTENCY_FORMAT:
                raise UserError(f"{path}: not a consistency file ({metadata.get('format')!r})")
            records = json.loads(metadata["records"])
            read = {}
            for question_id, record in records.items():
                tensors = {kind: handle.get_tensor(f"{question_id}/{kind}") for kind in _TENSORS}
                recorded = record.get("sha256")
                if recorded is not None and recorded != tensors_sha256(tensors):
                    raise UserError(
                        f"{path}: the record of {question_id!r} differs from its sha256; delete "
                        "the file and rerun the extraction command (it is rebuilt without the "
                        f"model), or run `python -m extraction verify {path.parent}`"
                    )
                read[question_id] = Consistency(
                    question_id=question_id,
                    trace_ids=tuple(record["trace_ids"]),
                    answers=tuple(record["answers"]),
                    eigen_block=record["eigen_block"],
                    **tensors,
                )
            return read
    except (
        SafetensorError,
        OSError,
        KeyError,
        TypeError,
        AttributeError,
        json.JSONDecodeError,
    ) as exc:
        raise UserError(
            f"{path}: damaged consistency file ({type(exc).__name__}); delete it and rerun the "
            "extraction command: it is rebuilt from the store without the model"
        ) from None


def write_consistency(path: Path, records: dict[str, Consistency]) -> None:
    """Write every record to ``path`` at once (temp file + rename)."""
    per_record = {
        qid: {kind: getattr(record, kind).float().contiguous() for kind in _TENSORS}
        for qid, record in records.items()
    }
    tensors = {f"{qid}/{kind}": t for qid, own in per_record.items() for kind, t in own.items()}
    header = {
        qid: {
            "trace_ids": list(record.trace_ids),
            "answers": list(record.answers),
            "eigen_block": record.eigen_block,
            "sha256": tensors_sha256(per_record[qid]),
        }
        for qid, record in records.items()
    }
    metadata = {
        "format": CONSISTENCY_FORMAT,
        "embedding_model": EMBEDDING_MODEL,
        "records": json.dumps(header, ensure_ascii=False),
    }
    with atomic_path(path) as tmp:
        save_tensors(tensors, tmp, metadata=metadata)


def sync_consistency(store, question_ids: Iterable[str], name: str = CONSISTENCY) -> int:
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


def compute_consistency(store, question_id: str, trace_ids: list[str], block: int) -> Consistency:
    """One question's record from its stored traces."""
    from extraction.labels import rougeL_similarities, sentence_embeddings

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
