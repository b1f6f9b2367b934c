"""Writes a trace store: a part file per batch, merged into shards, an index appended after each.

Crash model: a trace reaches the index only once its file (a per-batch part, later its shard)
has been renamed into place, so after a SIGKILL the index lists exactly the traces that are
safely on disk, and at most the batch being written is lost. A rerun skips the indexed traces,
adopts the parts of the shard that was being filled, and overwrites any file written but not
indexed. Merging parts into a shard writes the shard, then points their rows at it (the
index is rewritten atomically), then deletes the parts.

Memory: the writer holds one batch's tensors (until :meth:`TraceWriter.commit`), never a shard's.
The merge streams the parts' bytes into the shard (:mod:`extraction.store.concat`), holding only
their headers, so a run's peak does not grow with the shard size or the number of questions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from common import UserError, atomic_path, atomic_write_text, temp_pattern
from extraction.store.concat import METADATA, concat_safetensors, read_header
from extraction.store.consistency import CONSISTENCY, consistency_files
from extraction.store.contract import (
    IndexRow,
    Manifest,
    new_settings_names,
    run_file_prefix,
    without_none,
)
from extraction.store.index import (
    LABEL_FIELDS,
    append_rows,
    read_index,
    truncate_partial_line,
    update_rows,
)
from extraction.store.integrity import file_sha256, hashes_sha256, header_problem, tensor_sha256
from extraction.store.layout import (
    INDEX,
    LOCK,
    MANIFEST,
    SHARD_FORMAT,
    acquire_lock,
    every_rank_lock,
    packed_causal,
    parse_shard_name,
    read_manifest,
    run_file_pattern,
    save_tensors,
    shard_name,
    tensor_key,
)
from extraction.store.sparse import check_attention_format, encode_sparse
from extraction.store.trace import Trace

if TYPE_CHECKING:
    from extraction.store.reader import TraceStore

log = logging.getLogger(__name__)

ShardCallback = Callable[[Path, int], None]


class TraceWriter:
    """Append traces to the store at ``root``; use as a context manager.

    ``manifest`` is the run's :class:`~extraction.store.contract.Manifest`, serialised here (or
    its JSON, checked against it before anything is written). Its ``settings`` identify the run:
    resuming into a directory whose settings differ is refused, so one store never mixes
    models, prompts, decodings, data or labels. Call :meth:`commit` after each batch to put its
    traces on disk.
    """

    def __init__(
        self,
        root: str | Path,
        manifest: Manifest | dict,
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
            raise UserError("shard limits must be positive: check --shard_size/--shard_max_mb")
        if isinstance(manifest, Manifest):
            manifest = manifest.to_json()
        settings = Manifest.from_json(manifest, "the run's manifest").settings
        check_attention_format(settings.attention_format, settings.min_attention)
        self.min_attention = settings.min_attention  # None: dense attention
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
        # The sole writer (one process) cleans up after every rank layout, holding every rank's
        # lock meanwhile: a live rank's temp or unindexed file is refused, never deleted.
        sole = lock_name == LOCK
        try:
            with every_rank_lock(self.root) if sole else nullcontext():
                if sole:
                    self._remove_stale_temp_files()
                if overwrite:
                    self._remove_previous_run()
                self._prepare(manifest, retry_errors, any_rank=sole)
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _remove_stale_temp_files(self) -> None:
        for name in (MANIFEST, INDEX, CONSISTENCY):
            for stale in self.root.glob(temp_pattern(name)):
                log.info("removing %s, left by an interrupted write", stale.name)
                stale.unlink()

    def _remove_previous_run(self) -> None:
        """Delete the previous run's files only: those its index names, and the shard and part
        files of its own naming (written but not yet indexed). Anything else stays."""
        try:
            rows = read_index(self.root / INDEX).values()
        except UserError as exc:  # a damaged index: the file names still say what is ours
            log.warning("%s; deleting the run's files by name only", exc)
            rows = []
        ours = {shard for row in rows if (shard := row.get("shard"))}
        prefixes = {self.file_prefix}
        if (self.root / MANIFEST).exists():
            settings = read_manifest(self.root).get("settings", {})
            prefixes.add(run_file_prefix(settings.get("model", ""), settings.get("dataset")))
        patterns = [run_file_pattern(prefix, any_rank=True) for prefix in prefixes]
        for path in self.root.iterdir():
            # The temp file of a write of NAME is ``.NAME.{random}.tmp``.
            name = path.name
            if name.startswith(".") and name.endswith(".tmp"):
                name = name[1:].rsplit(".", 2)[0]
            if name in ours or any(pattern.match(name) for pattern in patterns):
                path.unlink()
        for name in (INDEX, MANIFEST):
            (self.root / name).unlink(missing_ok=True)
        for path in consistency_files(self.root):
            path.unlink()

    def _prepare(self, manifest: dict, retry_errors: bool, any_rank: bool) -> None:
        """Read the index, check the manifest, adopt the parts of the shard being filled, and
        delete this writer's files that no index row names (with ``any_rank``, those of every
        rank layout: a rerun with another number of processes never overwrites them)."""
        for stale in self.root.glob(f".{self.file_prefix}_shard_*.tmp"):
            stale.unlink()
        index_path = self.root / INDEX
        truncate_partial_line(index_path)
        self.rows: dict[str, IndexRow] = {
            qid: IndexRow.from_json(row, f"{index_path} row {qid!r}")
            for qid, row in read_index(index_path).items()
        }
        self._check_manifest(manifest)
        self.done_ids = {
            qid
            for qid, row in self.rows.items()
            if row.ok or (row.status == "error" and not retry_errors)
        }
        own = run_file_pattern(self.file_prefix)
        own_files = {row.shard for row in self.rows.values() if own.match(row.shard or "")}
        names = {name: parse_shard_name(name) for name in own_files}
        # The shard being filled when the last run stopped: its parts are adopted and merged
        # with the next batches.
        self._parts = sorted(name for name, (_, part) in names.items() if part is not None)
        self._shard = max((number for number, _ in names.values()), default=-1)
        if not self._parts:
            self._shard += 1
        self._next_part = max((names[name][1] for name in self._parts), default=-1) + 1
        self._parts_traces = sum(row.shard in self._parts for row in self.rows.values())
        damaged = {
            name: problem for name in self._parts if (problem := header_problem(self.root / name))
        }
        if damaged:
            name, problem = next(iter(damaged.items()))
            raise UserError(
                f"{self.root / name}: {problem}, and the index lists traces in it; run `python -m "
                f"extraction verify {self.root}`, or start over with --overwrite"
            )
        self._parts_bytes = sum((self.root / name).stat().st_size for name in self._parts)
        indexed = {row.shard for row in self.rows.values()}
        ours = run_file_pattern(self.file_prefix, any_rank=any_rank)
        for path in self.root.iterdir():
            if ours.match(path.name) and path.name not in indexed:
                log.info("removing %s, written but never indexed", path.name)
                path.unlink()  # a killed writer's, or parts already merged into their shard

    def _check_manifest(self, manifest: dict) -> None:
        manifest_path = self.root / MANIFEST
        if not manifest_path.exists():
            atomic_write_text(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))
            return
        previous = read_manifest(self.root)
        before = without_none(new_settings_names(previous.get("settings") or {}))
        now = without_none(manifest["settings"])
        if before.get("dataset_file"):  # older stores kept the path as typed
            before["dataset_file"] = str(Path(before["dataset_file"]).resolve())
        for settings in (before, now):  # older stores: dense attention
            settings.setdefault("attention_format", "dense")
        changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
        if changed:
            shown = "; ".join(f"{key}: {before.get(key)!r} → {now.get(key)!r}" for key in changed)
            raise UserError(
                f"{self.root} holds a run with other settings ({shown}); use --overwrite to "
                "replace it or choose another --output_dir"
            )
        if "requested" in manifest and previous.get("requested") != manifest["requested"]:
            previous["requested"] = manifest["requested"]
            atomic_write_text(manifest_path, json.dumps(previous, indent=2, ensure_ascii=False))

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            # After an error the batch so far is kept; not after a failed write (a full disk),
            # which a second write would only repeat.
            if exc_type is None or (
                issubclass(exc_type, Exception) and not issubclass(exc_type, OSError)
            ):
                self.commit()
                self._merge_parts()
        finally:
            self._release_lock()

    def add(self, trace: Trace) -> None:
        tensors = self._tensors_of(trace)
        self._buffer.append((trace, tensors))
        self._buffer_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        if (
            self._parts_traces + len(self._buffer) >= self.max_traces_per_shard
            or self._parts_bytes + self._buffer_bytes >= self.max_shard_bytes
        ):
            self.commit()
            self._merge_parts()

    def add_error(
        self,
        question_id: str,
        question: str,
        gold: dict,
        reason: str,
        source_question_id: str | None = None,
        generation: int = 0,
    ) -> None:
        """Record a question (or one generation of it) that failed; it is counted and the run
        goes on."""
        row = IndexRow(
            question_id,
            "error",
            question=question,
            gold=gold,
            error=reason,
            source_question_id=source_question_id,
            generation=generation,
        )
        append_rows(self.root / INDEX, [row.to_json()])

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
            packed = packed_causal(attention).to(self.storage_dtype)
            if self.min_attention is None:
                tensors[tensor_key(qid, "attentions", block)] = packed
                continue
            for kind, tensor in encode_sparse(packed, trace.seq_len, self.min_attention).items():
                tensors[tensor_key(qid, kind, block)] = tensor
        return {key: value.contiguous().cpu() for key, value in tensors.items()}

    def _save(self, name: str, tensors: dict[str, torch.Tensor], records: dict) -> tuple[str, int]:
        """Write one safetensors file atomically; its sha256 and size."""
        with atomic_path(self.root / name) as tmp:
            save_tensors(tensors, tmp, metadata=_shard_metadata(records))
            return file_sha256(tmp), tmp.stat().st_size

    def commit(self) -> None:
        """Put the buffered traces on disk as one part file, then index them."""
        if not self._buffer:
            return
        name = shard_name(self.file_prefix, self._shard, self._next_part)
        hashes = {
            trace.question_id: {key: tensor_sha256(key, t) for key, t in trace_tensors.items()}
            for trace, trace_tensors in self._buffer
        }
        records = {
            trace.question_id: _record(trace, hashes[trace.question_id])
            for trace, _ in self._buffer
        }
        tensors: dict[str, torch.Tensor] = {}
        for _, trace_tensors in self._buffer:
            tensors.update(trace_tensors)
        digest, size = self._save(name, tensors, records)
        rows = [
            _index_row(trace, name, digest, size, hashes_sha256(hashes[trace.question_id]))
            for trace, _ in self._buffer
        ]
        append_rows(self.root / INDEX, [row.to_json() for row in rows])
        self.rows.update((row.question_id, row) for row in rows)
        self._parts.append(name)
        self._next_part += 1
        self._parts_traces += len(self._buffer)
        self._parts_bytes += size
        self._buffer.clear()
        self._buffer_bytes = 0
        log.debug("saved %s (%d traces)", name, len(rows))

    def _merge_parts(self) -> None:
        """Merge the parts of the shard being filled into the shard file, streaming their bytes:
        memory holds the headers, never the tensors."""
        if not self._parts:
            return
        parts = [self.root / part for part in self._parts]
        records: dict[str, dict] = {}
        for part in parts:
            records.update(json.loads(read_header(part)[1][METADATA]["records"]))
        name = shard_name(self.file_prefix, self._shard)
        with atomic_path(self.root / name) as tmp:
            concat_safetensors(parts, tmp, _shard_metadata(records))
            digest, size = file_sha256(tmp), tmp.stat().st_size
        moved = {"shard": name, "shard_sha256": digest, "shard_bytes": size}
        update_rows(self.root / INDEX, dict.fromkeys(records, moved))
        self.rows.update((qid, replace(self.rows[qid], **moved)) for qid in records)
        for part in self._parts:
            (self.root / part).unlink()
        log.debug("merged %d parts into %s", len(self._parts), name)
        if self.on_shard_saved is not None:
            self.on_shard_saved(self.root / name, len(records))
        self._parts, self._parts_traces, self._parts_bytes = [], 0, 0
        self._shard += 1
        self._next_part = 0


def rewrite_labels(store: TraceStore, labels: dict[str, dict]) -> None:
    """Replace the label fields of the given rows of ``store`` (and their checksums); only the
    index file changes, atomically, under the store's lock and every rank's."""
    with acquire_lock(store.root), every_rank_lock(store.root):
        for stale in store.root.glob(temp_pattern(INDEX)):
            stale.unlink()  # left by a killed `label`: nobody else writes while we hold the locks
        updates = {
            qid: {key: fields[key] for key in LABEL_FIELDS} for qid, fields in labels.items()
        }
        update_rows(store.root / INDEX, updates)
        for question_id, fields in updates.items():
            store.rows[question_id] = replace(store.rows[question_id], **fields)


def _shard_metadata(records: dict[str, dict]) -> dict[str, str]:
    return {"format": SHARD_FORMAT, "records": json.dumps(records, ensure_ascii=False)}


def _record(trace: Trace, hashes: dict[str, str]) -> dict:
    """A trace's per-trace metadata in its shard's header, with the sha256 of each tensor."""
    return {
        "tensor_sha256": hashes,
        "tokens_decoded": trace.tokens_decoded,
        "n_prompt_tokens": trace.n_prompt_tokens,
        "hidden_state_indices": sorted(trace.hidden_states),
        "attention_indices": sorted(trace.attentions),
    }


def _index_row(
    trace: Trace, shard: str, shard_sha256: str, shard_bytes: int, trace_sha256: str
) -> IndexRow:
    return IndexRow(
        question_id=trace.question_id,
        status="ok",
        shard=shard,
        question=trace.question,
        gold=trace.gold,
        generated_answer_clean=trace.generated_answer_clean,
        answer_end=trace.answer_end,
        n_prompt_tokens=trace.n_prompt_tokens,
        n_answer_tokens=trace.n_answer_tokens,
        seq_len=trace.seq_len,
        label=trace.label,
        label_method=trace.label_method,
        label_score=trace.label_score,
        shard_sha256=shard_sha256,
        shard_bytes=shard_bytes,
        trace_sha256=trace_sha256,
        source_question_id=trace.source_question_id,
        generation=trace.generation,
    )
