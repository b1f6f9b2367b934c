"""Reads a trace store lazily: the index and shard headers up front, tensors on demand.

``store.attention(qid, layer)`` memory-maps one tensor of one shard (safetensors ``safe_open``),
so reading one layer of one trace never loads the shard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open

from extraction.errors import UserError
from extraction.store.index import LABEL_FIELDS, read_index, rewrite_index
from extraction.store.layout import (
    INDEX,
    LOCK,
    MANIFEST,
    acquire_lock,
    read_manifest,
    tensor_key,
    unpack_causal,
)
from extraction.trace import Trace

_STORED_INDICES = {"hidden_states": "hidden_state_indices", "attentions": "attention_indices"}


class TraceStore:
    """A finished (or partly finished) extraction run, read-only.

    Iterating yields the successful traces as :class:`~extraction.trace.Trace` objects, in index
    order. ``len(store)`` counts them; ``store.rows`` has every index row, errors included.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not (self.root / MANIFEST).exists():
            raise UserError(
                f"{self.root} is not a trace store (no {MANIFEST}); run `python -m extraction` "
                "first or pass the directory it wrote"
            )
        self.manifest = read_manifest(self.root)
        self.rows = read_index(self.root / INDEX)
        self.question_ids = [qid for qid, row in self.rows.items() if row["status"] == "ok"]
        self._open = lru_cache(maxsize=8)(self._open_shard)
        self._records = lru_cache(maxsize=8)(self._read_records)

    def __len__(self) -> int:
        return len(self.question_ids)

    def __iter__(self) -> Iterator[Trace]:
        for qid in self.question_ids:
            yield self[qid]

    def __contains__(self, question_id: str) -> bool:
        row = self.rows.get(question_id)
        return row is not None and row["status"] == "ok"

    @property
    def errors(self) -> list[dict]:
        return [row for row in self.rows.values() if row["status"] == "error"]

    @property
    def shard_files(self) -> list[Path]:
        names = {row["shard"] for row in self.rows.values() if row.get("shard")}
        return sorted(self.root / name for name in names)

    def _row(self, question_id: str) -> dict:
        row = self.rows.get(question_id)
        if row is None or row["status"] != "ok":
            raise KeyError(f"no trace for question {question_id!r} in {self.root}")
        return row

    def _open_shard(self, name: str):
        return safe_open(str(self.root / name), framework="pt")

    def _read_records(self, name: str) -> dict:
        return json.loads(self._open(name).metadata()["records"])

    def record(self, question_id: str) -> dict:
        """Index row merged with the shard's per-trace metadata (``tokens_decoded`` etc.)."""
        row = self._row(question_id)
        return {**row, **self._records(row["shard"])[question_id]}

    def _tensor(self, question_id: str, kind: str, index: int | None = None) -> torch.Tensor:
        shard = self._row(question_id)["shard"]
        if index is not None:
            # The shard header's record says which layers exist; asking safe_open for its key
            # list instead costs milliseconds per read on a large shard.
            stored = self._records(shard)[question_id][_STORED_INDICES[kind]]
            if index not in stored:
                raise UserError(
                    f"{kind}[{index}] was not stored (the run kept {stored}); see --layers"
                )
        return self._open(shard).get_tensor(tensor_key(question_id, kind, index))

    def tokens(self, question_id: str) -> torch.Tensor:
        return self._tensor(question_id, "tokens").long()

    def hidden_state(self, question_id: str, index: int) -> torch.Tensor:
        """``[T, hidden]``; index 0 is the embedding output, ``l + 1`` the output of block ``l``."""
        return self._tensor(question_id, "hidden_states", index)

    def attention(self, question_id: str, block: int) -> torch.Tensor:
        """``[heads, T, T]`` of block ``block``; ``[h, i, j]`` = attention of token i to token j."""
        seq_len = self._row(question_id)["seq_len"]
        return unpack_causal(self._tensor(question_id, "attentions", block), seq_len)

    def token_logprobs(self, question_id: str) -> torch.Tensor:
        """``[n_answer]`` log-probability of each chosen answer token (no layer is read)."""
        return self._tensor(question_id, "token_logprobs")

    def token_entropy(self, question_id: str) -> torch.Tensor:
        """``[n_answer]`` entropy (nats) of the distribution each answer token was chosen from."""
        return self._tensor(question_id, "token_entropy")

    def __getitem__(self, question_id: str) -> Trace:
        record = self.record(question_id)
        return Trace(
            question_id=question_id,
            question=record["question"],
            generated_answer_clean=record["generated_answer_clean"],
            tokens=self.tokens(question_id),
            tokens_decoded=record["tokens_decoded"],
            n_prompt_tokens=record["n_prompt_tokens"],
            hidden_states={
                i: self.hidden_state(question_id, i) for i in record["hidden_state_indices"]
            },
            attentions={b: self.attention(question_id, b) for b in record["attention_indices"]},
            token_logprobs=self.token_logprobs(question_id),
            token_entropy=self.token_entropy(question_id),
            answer_end=record["answer_end"],
            gold=record["gold"],
            label=record["label"],
            label_method=record["label_method"],
            label_score=record["label_score"],
        )

    def rewrite_labels(self, labels: dict[str, dict]) -> None:
        """Replace the label fields of the given rows; only the index file changes (atomically)."""
        with acquire_lock(self.root), ExitStack() as ranks:
            for lock in self.root.glob(f"{LOCK}.rank*"):
                ranks.enter_context(acquire_lock(self.root, lock.name))
            for question_id, fields in labels.items():
                self.rows[question_id].update({key: fields[key] for key in LABEL_FIELDS})
            rewrite_index(self.root / INDEX, list(self.rows.values()))
