"""Reads a trace store lazily: the index and shard headers up front, tensors on demand.

``store.attention(qid, block)`` memory-maps one tensor of one shard (safetensors ``safe_open``),
so reading one layer of one trace never loads the shard. Tensors are named by role
(``attention``, ``resid_post``, ``embeddings``, ``answer_stats``); the manifest, the index rows
and the trace records are the typed contract of :mod:`extraction.store.contract`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from functools import cached_property, lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from common import UserError
from extraction.store.consistency import consistency_files, read_consistency
from extraction.store.contract import (
    AnswerStats,
    Consistency,
    IndexRow,
    Manifest,
    TraceRecord,
    trace_id,
)
from extraction.store.hub import store_folder
from extraction.store.index import read_index
from extraction.store.integrity import file_sha256, hashes_sha256, tensor_sha256, tensors_sha256
from extraction.store.layout import INDEX, MANIFEST, read_manifest, tensor_key, unpack_causal
from extraction.store.sparse import COLUMNS, INDEX_KINDS, ROW_OFFSETS, decode_sparse
from extraction.store.trace import EMBEDDINGS, Trace, complete_blocks, resid_post_index

_STORED_INDICES = {"hidden_states": "hidden_state_indices", "attentions": "attention_indices"}
_STORED_INDICES |= dict.fromkeys(INDEX_KINDS, "attention_indices")


class TraceStore:
    """A finished (or partly finished) extraction run, read-only.

    Iterating yields the successful traces as :class:`~extraction.trace.Trace` objects, in index
    order. ``len(store)`` counts them; ``store.rows`` has every index row (an
    :class:`~extraction.store.contract.IndexRow`), errors included; ``store.manifest`` is a
    :class:`~extraction.store.contract.Manifest`. ``root`` is a folder or a Hub dataset
    (``hf://datasets/OWNER/NAME[@REVISION]``, downloaded once; :mod:`extraction.store.hub`).

    ``check_traces=False`` skips the per-trace sha256 (``verify`` hashes on its own);
    ``damaged_rows``, a list, collects the ids of rows that differ from their checksum instead
    of refusing to open.

    A store of several generations per question (``num_generations > 1``) is addressed by trace
    id (``{question_id}#{generation}``) everywhere above; ``store.units`` groups them by question
    and ``store.consistency(question_id)`` holds what the sampling detectors need.
    """

    def __init__(
        self, root: str | Path, check_traces: bool = True, damaged_rows: list[str] | None = None
    ) -> None:
        self.root = store_folder(root)
        if not (self.root / MANIFEST).exists():
            where = "does not exist" if not self.root.exists() else f"has no {MANIFEST}"
            raise UserError(
                f"{self.root} is not a trace store: {self.root.resolve()} {where} (relative "
                "paths, in configs too, are read from the current directory); run `python -m "
                "extraction` first or pass the directory it wrote"
            )
        self.manifest = Manifest.from_json(read_manifest(self.root), self.root / MANIFEST)
        index = self.root / INDEX
        self.rows: dict[str, IndexRow] = {
            qid: IndexRow.from_json(row, f"{index} row {qid!r}")
            for qid, row in read_index(index, damaged_rows).items()
        }
        self.question_ids = [qid for qid, row in self.rows.items() if row.ok]
        for row in self.rows.values():
            if row.shard is not None and not is_plain_name(row.shard):
                raise UserError(
                    f"{index} row {row.question_id!r}: shard {row.shard!r} is not a file name in "
                    f"the store; the index is damaged or crafted, run `python -m extraction "
                    f"verify {self.root}`"
                )
        # Traces whose record (or, in an older store, whole tensors) matched the index's sha256.
        self.check_traces = check_traces
        self._checked: set[str] = set()
        self._open = lru_cache(maxsize=8)(self._open_shard)
        self._records = lru_cache(maxsize=8)(self._read_records)
        self._consistency: dict[str, Consistency] | None = None

    def __len__(self) -> int:
        return len(self.question_ids)

    def __iter__(self) -> Iterator[Trace]:
        for qid in self.question_ids:
            yield self[qid]

    def __contains__(self, question_id: str) -> bool:
        row = self.rows.get(question_id)
        return row is not None and row.ok

    @property
    def errors(self) -> list[IndexRow]:
        return [row for row in self.rows.values() if row.status == "error"]

    @property
    def shard_files(self) -> list[Path]:
        names = {row.shard for row in self.rows.values() if row.shard}
        return sorted(self.root / name for name in names)

    @property
    def manifest_sha256(self) -> str:
        """The sha256 of ``manifest.json`` as written: what a cache of derived data keys on."""
        return file_sha256(self.root / MANIFEST)

    @property
    def min_attention(self) -> float | None:
        """The smallest attention weight a sparse store is sure to hold (None: a dense store,
        which holds every weight); see :mod:`extraction.store.sparse`."""
        return self.manifest.settings.min_attention

    @property
    def stored_blocks(self) -> list[int]:
        """The blocks whose attention and output hidden state the run kept."""
        settings = self.manifest.settings
        return complete_blocks(settings.attention_blocks, settings.hidden_state_layers)

    @property
    def num_generations(self) -> int:
        """Traces per question the run asked for (1 for stores before ``--num_generations``)."""
        return self.manifest.settings.decoding.generations

    @cached_property
    def units(self) -> dict[str, list[str]]:
        """Question id → the ids of its ok traces, in generation order (in a one-generation
        store each question's only trace has the question's id). Read it, do not change it."""
        units: dict[str, list[IndexRow]] = {}
        for qid in self.question_ids:
            units.setdefault(self.rows[qid].unit, []).append(self.rows[qid])
        return {
            unit: [row.question_id for row in sorted(rows, key=lambda row: row.generation)]
            for unit, rows in units.items()
        }

    def consistency(self, question_id: str) -> Consistency:
        """The consistency record of a question (its K answers' embeddings, lexical similarity
        and EigenScore hidden states); see :class:`~extraction.store.contract.Consistency`."""
        if self.num_generations == 1:
            raise UserError(
                f"{self.root} has one generation per question: the consistency data need a store "
                "extracted with --num_generations 2 or more (and --do_sample)"
            )
        expected = self.units.get(question_id)
        if expected is None:
            raise KeyError(f"no trace of question {question_id!r} in {self.root}")
        if self._consistency is None:
            self._consistency = self._read_consistency()
        record = self._consistency.get(question_id)
        if record is None or list(record.trace_ids) != expected:
            state = "missing" if record is None else f"out of date ({list(record.trace_ids)})"
            raise UserError(
                f"{self.root}: the consistency record of {question_id!r} is {state} for its "
                f"traces {expected}; rerun the extraction command (it rebuilds the record "
                "without the model)"
            )
        return record

    def _read_consistency(self) -> dict[str, Consistency]:
        """Every rank's records; where two ranks wrote one question (a resume with another
        number of processes), the record that matches the store's traces."""
        units = self.units
        merged: dict[str, Consistency] = {}
        for path in consistency_files(self.root):
            for qid, record in read_consistency(path).items():
                if qid not in merged or list(record.trace_ids) == units.get(qid):
                    merged[qid] = record
        return merged

    def row(self, question_id: str) -> IndexRow:
        """The index row of a stored trace (``KeyError`` for an error row or an unknown id)."""
        row = self.rows.get(question_id)
        if row is None or not row.ok:
            raise KeyError(f"no trace for question {question_id!r} in {self.root}")
        return row

    def _damaged(self, name: str, reason: str) -> UserError:
        return UserError(
            f"{self.root / name}: {reason}; run `python -m extraction verify {self.root}` to "
            "list every damaged file"
        )

    def _open_shard(self, name: str):
        if (self.root / name).is_symlink():
            raise self._damaged(name, "a symbolic link (shards are plain files in the store)")
        try:
            return safe_open(str(self.root / name), framework="pt")
        except FileNotFoundError:
            raise self._damaged(name, "missing (the index lists it)") from None
        except (SafetensorError, OSError) as exc:
            raise self._damaged(name, f"not a readable safetensors file ({exc})") from None

    def _read_records(self, name: str) -> dict[str, TraceRecord]:
        """A shard's trace records, parsed once (every tensor read asks which layers exist)."""
        try:
            records = json.loads(self._open(name).metadata()["records"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise self._damaged(name, f"damaged trace records ({type(exc).__name__})") from None
        if not isinstance(records, dict):
            raise self._damaged(name, "damaged trace records (not a JSON object)")
        where = f"{self.root / name} record"
        return {qid: TraceRecord.from_json(raw, f"{where} {qid!r}") for qid, raw in records.items()}

    def record(self, question_id: str) -> TraceRecord:
        """The trace's metadata in its shard's header (``tokens_decoded``, stored layers)."""
        row = self.row(question_id)
        record = self._records(row.shard).get(question_id)
        if record is None:
            raise self._damaged(row.shard, f"holds no trace {question_id!r} (the index says so)")
        if (len(record.tokens_decoded), record.n_prompt_tokens) != (
            row.seq_len,
            row.n_prompt_tokens,
        ):
            raise self._damaged(
                row.shard,
                f"trace {question_id!r} has {len(record.tokens_decoded)} tokens "
                f"({record.n_prompt_tokens} prompt), the index says {row.seq_len} "
                f"({row.n_prompt_tokens}); one of them was edited",
            )
        return record

    def trace_keys(self, question_id: str) -> list[str]:
        """The names of every tensor of a trace in its shard (what ``trace_sha256`` covers)."""
        record = self.record(question_id)
        keys = [tensor_key(question_id, k) for k in ("tokens", "token_logprobs", "token_entropy")]
        keys += [tensor_key(question_id, "hidden_states", i) for i in record.hidden_state_indices]
        kinds = ("attentions", *(INDEX_KINDS if self.min_attention is not None else ()))
        keys += [tensor_key(question_id, k, b) for k in kinds for b in record.attention_indices]
        return keys

    def trace_sha256(self, question_id: str) -> str:
        """The sha256 of a trace's tensors as they are on disk now (what ``trace_sha256``
        recorded: over per-tensor digests when the record lists them, else over the bytes)."""
        row = self.row(question_id)
        handle = self._open(row.shard)
        try:
            tensors = {key: handle.get_tensor(key) for key in self.trace_keys(question_id)}
        except SafetensorError as exc:
            raise self._damaged(row.shard, f"cannot read {question_id!r} ({exc})") from None
        if self.record(question_id).tensor_sha256:
            return hashes_sha256({key: tensor_sha256(key, t) for key, t in tensors.items()})
        return tensors_sha256(tensors)

    def _check(self, question_id: str, key: str, tensor: torch.Tensor) -> None:
        """A tensor against its recorded sha256: with per-tensor digests only what is read is
        hashed (the record's list checked once against the index); an older store's trace is
        hashed whole, once."""
        row = self.row(question_id)
        if not self.check_traces or row.trace_sha256 is None:
            return
        hashes = self.record(question_id).tensor_sha256
        if question_id not in self._checked:
            whole = hashes_sha256(hashes) if hashes else self.trace_sha256(question_id)
            if whole != row.trace_sha256:
                raise self._damaged(
                    row.shard, f"trace {question_id!r} differs from its recorded sha256"
                )
            self._checked.add(question_id)
        if hashes and hashes.get(key) != tensor_sha256(key, tensor):
            raise self._damaged(
                row.shard, f"trace {question_id!r}: {key} differs from its recorded sha256"
            )

    def _tensor(self, question_id: str, kind: str, index: int | None = None) -> torch.Tensor:
        shard = self.row(question_id).shard
        if index is not None:
            # The shard header's record says which layers exist; asking safe_open for its key
            # list instead costs milliseconds per read on a large shard.
            stored = getattr(self.record(question_id), _STORED_INDICES[kind])
            if index not in stored:
                raise UserError(
                    f"{kind}[{index}] was not stored (the run kept {list(stored)}); see --layers"
                )
        key = tensor_key(question_id, kind, index)
        try:
            tensor = self._open(shard).get_tensor(key)
        except SafetensorError as exc:
            raise self._damaged(shard, f"cannot read {question_id!r} ({exc})") from None
        self._check(question_id, key, tensor)
        return tensor

    def tokens(self, question_id: str) -> torch.Tensor:
        return self._tensor(question_id, "tokens").long()

    def embeddings(self, question_id: str) -> torch.Tensor:
        """``[T, hidden]``: the embedding output (hidden-state index 0)."""
        return self._tensor(question_id, "hidden_states", EMBEDDINGS)

    def resid_post(self, question_id: str, block: int) -> torch.Tensor:
        """``[T, hidden]``: the output of block ``block`` (the residual stream after it)."""
        return self._tensor(question_id, "hidden_states", resid_post_index(block))

    def attention(self, question_id: str, block: int) -> torch.Tensor:
        """``[heads, T, T]`` of block ``block``; ``[h, i, j]`` = attention of token i to token j
        (in a sparse store, 0 where no head reached ``min_attention``)."""
        seq_len = self.row(question_id).seq_len
        values = self._tensor(question_id, "attentions", block)
        if self.min_attention is None:
            return unpack_causal(values, seq_len)
        offsets = self._tensor(question_id, ROW_OFFSETS, block)
        return decode_sparse(values, offsets, self._tensor(question_id, COLUMNS, block), seq_len)

    def answer_stats(self, question_id: str) -> AnswerStats:
        """Each answer token's log-probability and entropy; reads no layer."""
        return AnswerStats(
            logprobs=self._tensor(question_id, "token_logprobs"),
            entropy=self._tensor(question_id, "token_entropy"),
        )

    def __getitem__(self, question_id: str) -> Trace:
        row, record = self.row(question_id), self.record(question_id)
        stats = self.answer_stats(question_id)
        return Trace(
            question_id=question_id,
            question=row.question,
            generated_answer_clean=row.generated_answer_clean,
            tokens=self.tokens(question_id),
            tokens_decoded=list(record.tokens_decoded),
            n_prompt_tokens=record.n_prompt_tokens,
            hidden_states={
                i: self._tensor(question_id, "hidden_states", i)
                for i in record.hidden_state_indices
            },
            attentions={b: self.attention(question_id, b) for b in record.attention_indices},
            token_logprobs=stats.logprobs,
            token_entropy=stats.entropy,
            answer_end=row.answer_end,
            gold=row.gold,
            source_question_id=row.source_question_id,
            generation=row.generation,
            label=row.label,
            label_method=row.label_method,
            label_score=row.label_score,
        )

    @property
    def requested(self) -> list[str]:
        """The question ids the latest run was asked for (empty for stores that predate it)."""
        return list(self.manifest.requested.question_ids)

    @property
    def missing(self) -> list[str]:
        """Requested questions with a trace that has no row at all: an interrupted run, to
        resume."""
        generations = range(self.num_generations)
        return [
            qid
            for qid in self.requested
            if any(trace_id(qid, k, self.num_generations) not in self.rows for k in generations)
        ]

    @property
    def label_methods(self) -> Counter:
        return Counter(self.rows[qid].label_method for qid in self.question_ids)

    def shard_rows(self) -> dict[str, list[IndexRow]]:
        """The ok rows of each shard file the index names."""
        shards: dict[str, list[IndexRow]] = {}
        for qid in self.question_ids:
            shards.setdefault(self.rows[qid].shard, []).append(self.rows[qid])
        return shards


def is_plain_name(name: str) -> bool:
    """A file name in the store root: no separator, not ``.``/``..``, not hidden."""
    return bool(name) and Path(name).name == name and not name.startswith(".")
