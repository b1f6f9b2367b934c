"""Writes a trace store: buffered shards, atomic renames, an index appended after each shard.

Crash model: a trace reaches the index only once its shard has been renamed into place, so after
a SIGKILL the index lists exactly the traces that are safely on disk. A rerun skips them, reuses
the number of any orphan shard (written but not indexed) and overwrites it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from extraction.errors import UserError
from extraction.store.index import append_rows, read_index, truncate_partial_line
from extraction.store.layout import (
    INDEX,
    LOCK,
    MANIFEST,
    SHARD_FORMAT,
    SHARD_SUFFIX,
    acquire_lock,
    atomic_write_text,
    pack_causal,
    read_manifest,
    shard_name,
    shard_number,
    tensor_key,
)
from extraction.trace import Trace

log = logging.getLogger(__name__)

ShardCallback = Callable[[Path, int], None]


class TraceWriter:
    """Append traces to the store at ``root``; use as a context manager.

    ``manifest["settings"]`` identifies the run: resuming into a directory whose settings differ
    is refused, so one store never mixes models, prompts or decodings.
    """

    def __init__(
        self,
        root: str | Path,
        manifest: dict,
        *,
        file_prefix: str,
        lock_name: str = LOCK,
        overwrite: bool = False,
        retry_errors: bool = False,
        max_traces_per_shard: int = 500,
        max_shard_bytes: int = 2**30,
        storage_dtype: torch.dtype = torch.float16,
        on_shard_saved: ShardCallback | None = None,
    ) -> None:
        if max_traces_per_shard < 1 or max_shard_bytes < 1:
            raise UserError("shard limits must be positive: check --shard-size/--shard-max-mb")
        self.root = Path(root)
        self.file_prefix = file_prefix
        self.max_traces_per_shard = max_traces_per_shard
        self.max_shard_bytes = max_shard_bytes
        self.storage_dtype = storage_dtype
        self.on_shard_saved = on_shard_saved
        self._buffer: list[tuple[Trace, dict[str, torch.Tensor]]] = []
        self._buffer_bytes = 0
        self._lock_handle = None

        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_handle = acquire_lock(self.root, lock_name)
        try:
            if overwrite:
                self._remove_previous_run()
            self._prepare(manifest, retry_errors)
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _remove_previous_run(self) -> None:
        for path in self.root.glob(f"*{SHARD_SUFFIX}"):
            path.unlink()
        for name in (INDEX, MANIFEST):
            (self.root / name).unlink(missing_ok=True)

    def _prepare(self, manifest: dict, retry_errors: bool) -> None:
        for stale in self.root.glob(f".{self.file_prefix}_shard_*.tmp"):
            stale.unlink()
        index_path = self.root / INDEX
        truncate_partial_line(index_path)
        rows = read_index(index_path)
        manifest_path = self.root / MANIFEST
        if manifest_path.exists():
            previous = read_manifest(self.root).get("settings")
            if previous != manifest["settings"]:
                changed = sorted(
                    key
                    for key in set(previous or {}) | set(manifest["settings"])
                    if (previous or {}).get(key) != manifest["settings"].get(key)
                )
                raise UserError(
                    f"{self.root} holds a run with other settings ({', '.join(changed)}); "
                    "use --overwrite to replace it or choose another --output-dir"
                )
        else:
            atomic_write_text(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))
        self.done_ids = {
            qid
            for qid, row in rows.items()
            if row["status"] == "ok" or (row["status"] == "error" and not retry_errors)
        }
        own = f"{self.file_prefix}_shard_"
        shard_numbers = [
            shard_number(row["shard"])
            for row in rows.values()
            if (row.get("shard") or "").startswith(own)
        ]
        self._next_shard = max(shard_numbers, default=-1) + 1

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None or issubclass(exc_type, Exception):
                self.flush()
        finally:
            self._release_lock()

    def add(self, trace: Trace) -> None:
        tensors = self._tensors_of(trace)
        self._buffer.append((trace, tensors))
        self._buffer_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        if (
            len(self._buffer) >= self.max_traces_per_shard
            or self._buffer_bytes >= self.max_shard_bytes
        ):
            self.flush()

    def add_error(self, question_id: str, question: str, gold: dict, reason: str) -> None:
        """Record a question that failed; it is counted and the run goes on."""
        row = {
            "question_id": question_id,
            "status": "error",
            "error": reason,
            "shard": None,
            "question": question,
            "gold": gold,
        }
        append_rows(self.root / INDEX, [row])

    def _tensors_of(self, trace: Trace) -> dict[str, torch.Tensor]:
        qid = trace.question_id
        tensors = {
            tensor_key(qid, "tokens"): trace.tokens.to(torch.int32),
            tensor_key(qid, "token_logprobs"): trace.token_logprobs.float(),
            tensor_key(qid, "token_entropy"): trace.token_entropy.float(),
        }
        for index, hidden in trace.hidden_states.items():
            tensors[tensor_key(qid, "hidden_states", index)] = hidden.to(self.storage_dtype)
        for block, attention in trace.attentions.items():
            packed = pack_causal(attention.to(self.storage_dtype))
            tensors[tensor_key(qid, "attentions", block)] = packed
        return {key: value.contiguous().cpu() for key, value in tensors.items()}

    def flush(self) -> None:
        """Write the buffered traces as one shard, then index them."""
        if not self._buffer:
            return
        name = shard_name(self.file_prefix, self._next_shard)
        records = {
            trace.question_id: {
                "tokens_decoded": trace.tokens_decoded,
                "n_prompt_tokens": trace.n_prompt_tokens,
                "hidden_state_indices": sorted(trace.hidden_states),
                "attention_indices": sorted(trace.attentions),
            }
            for trace, _ in self._buffer
        }
        tensors: dict[str, torch.Tensor] = {}
        for _, trace_tensors in self._buffer:
            tensors.update(trace_tensors)
        final = self.root / name
        tmp = self.root / f".{name}.tmp"
        metadata = {"format": SHARD_FORMAT, "records": json.dumps(records, ensure_ascii=False)}
        save_file(tensors, str(tmp), metadata=metadata)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        append_rows(self.root / INDEX, [_index_row(trace, name) for trace, _ in self._buffer])
        n_traces = len(self._buffer)
        self._buffer.clear()
        self._buffer_bytes = 0
        self._next_shard += 1
        log.debug("saved %s (%d traces)", final, n_traces)
        if self.on_shard_saved is not None:
            self.on_shard_saved(final, n_traces)


def _index_row(trace: Trace, shard: str) -> dict:
    return {
        "question_id": trace.question_id,
        "status": "ok",
        "error": None,
        "shard": shard,
        "question": trace.question,
        "gold": trace.gold,
        "generated_answer_clean": trace.generated_answer_clean,
        "answer_end": trace.answer_end,
        "n_prompt_tokens": trace.n_prompt_tokens,
        "n_answer_tokens": trace.n_answer_tokens,
        "seq_len": trace.seq_len,
        "label": trace.label,
        "label_method": trace.label_method,
        "label_score": trace.label_score,
    }
