"""The per-question consistency file of a store with several generations per question.

``consistency.safetensors`` in the store root (``consistency.rank{r}.safetensors`` for each rank
of a multi-process run) holds one :class:`~extraction.store.contract.Consistency` per question:
tensors ``{question_id}/answer_embeddings``, ``/lexical_similarity`` and ``/eigen_hidden``, and
in the header the trace ids, answers and eigen block of each. The store only reads and writes
it: the records are computed on the extraction side (:mod:`extraction.consistency`). The file is
rewritten atomically after each batch.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from common import UserError, atomic_path
from extraction.store.contract import Consistency

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


def read_consistency(path: Path) -> dict[str, Consistency]:
    """Every record of one consistency file."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != CONSISTENCY_FORMAT:
                raise UserError(f"{path}: not a consistency file ({metadata.get('format')!r})")
            records = json.loads(metadata["records"])
            return {
                question_id: Consistency(
                    question_id=question_id,
                    trace_ids=tuple(record["trace_ids"]),
                    answers=tuple(record["answers"]),
                    eigen_block=record["eigen_block"],
                    **{kind: handle.get_tensor(f"{question_id}/{kind}") for kind in _TENSORS},
                )
                for question_id, record in records.items()
            }
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path}: damaged consistency file ({type(exc).__name__}); delete it and rerun the "
            "extraction command: it is rebuilt from the store without the model"
        ) from None


def write_consistency(path: Path, records: dict[str, Consistency]) -> None:
    """Write every record to ``path`` at once (temp file + rename)."""
    tensors = {
        f"{qid}/{kind}": getattr(record, kind).float().contiguous()
        for qid, record in records.items()
        for kind in _TENSORS
    }
    header = {
        qid: {
            "trace_ids": list(record.trace_ids),
            "answers": list(record.answers),
            "eigen_block": record.eigen_block,
        }
        for qid, record in records.items()
    }
    metadata = {
        "format": CONSISTENCY_FORMAT,
        "embedding_model": EMBEDDING_MODEL,
        "records": json.dumps(header, ensure_ascii=False),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
