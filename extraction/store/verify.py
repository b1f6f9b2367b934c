"""Everything a store folder holds, checked against what the store recorded (``verify``).

Beyond what a reader checks as it goes (:mod:`extraction.store.reader`), this looks at the
whole folder: each shard's header, size, file sha256 and each trace's sha256; the index rows'
own checksums; shard files the index does not list and traces in a shard that the index does
not list (a missing or truncated index); the consistency files. ``inspect`` uses the cheap part
(:func:`check_headers`: headers and sizes, no tensor data).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from common import UserError
from extraction.store.concat import METADATA, read_header
from extraction.store.consistency import consistency_files, read_consistency
from extraction.store.contract import IndexRow
from extraction.store.integrity import file_sha256, header_problem
from extraction.store.layout import INDEX, SHARD_SUFFIX, parse_shard_name
from extraction.store.reader import TraceStore


@dataclass(frozen=True)
class Finding:
    """One damaged or unexpected file, and the traces it concerns (when known)."""

    path: Path
    problem: str
    traces: tuple[str, ...] = ()

    def line(self) -> str:
        shown = ", ".join(self.traces[:20]) + (
            f" (+{len(self.traces) - 20} more)" if len(self.traces) > 20 else ""
        )
        return f"damaged: {self.path}: {self.problem}" + (f"; traces: {shown}" if shown else "")


def _structure_problem(store: TraceStore, name: str, rows: list[IndexRow]) -> str | None:
    """What is wrong with a shard's header or size (None: nothing), reading no tensor data."""
    problem = header_problem(store.root / name)
    recorded = rows[0].shard_bytes
    if problem is None and recorded is not None:
        size = (store.root / name).stat().st_size
        if size != recorded:
            problem = f"{size} bytes, the index recorded {recorded}"
    return problem


def check_headers(store: TraceStore) -> dict[str, str]:
    """``{shard: problem}`` for every shard whose header is damaged or whose size is wrong."""
    problems = {}
    for name, rows in store.shard_rows().items():
        if (problem := _structure_problem(store, name, rows)) is not None:
            problems[name] = problem
    return problems


def _trace_intact(store: TraceStore, row: IndexRow) -> bool:
    if row.trace_sha256 is None:
        return False
    try:
        return store.trace_sha256(row.question_id) == row.trace_sha256
    except (UserError, KeyError):
        return False


def _shard_findings(store: TraceStore) -> list[Finding]:
    findings = []
    for name, rows in store.shard_rows().items():
        ids = tuple(row.question_id for row in rows)
        if (problem := _structure_problem(store, name, rows)) is not None:
            findings.append(Finding(store.root / name, problem, ids))
            continue
        recorded = rows[0].shard_sha256
        if recorded is None or file_sha256(store.root / name) == recorded:
            continue
        bad = tuple(row.question_id for row in rows if not _trace_intact(store, row))
        problem = f"sha256 differs from the index ({len(bad)} traces damaged)"
        findings.append(Finding(store.root / name, problem, bad))
    return findings


def _shard_ids(path: Path) -> tuple[str, ...]:
    """The trace ids a shard's header lists (empty when the header cannot be read)."""
    if header_problem(path) is not None:
        return ()
    try:
        return tuple(json.loads(read_header(path)[1][METADATA]["records"]))
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def _unlisted_findings(store: TraceStore) -> list[Finding]:
    """Shard files the index does not name, and traces in named shards it does not list."""
    listed = {row.shard for row in store.rows.values() if row.shard}
    on_disk = []
    for path in sorted(store.root.glob(f"*{SHARD_SUFFIX}")):
        try:
            parse_shard_name(path.name)
        except ValueError:
            continue  # not a shard (the consistency file, a user's file)
        on_disk.append(path)
    findings = []
    if on_disk and not (store.root / INDEX).exists():
        findings.append(
            Finding(store.root / INDEX, f"missing, and {len(on_disk)} shard files remain")
        )
    for path in on_disk:
        ids = _shard_ids(path)
        if path.name not in listed:
            findings.append(Finding(path, "not listed in the index (truncated or replaced?)", ids))
            continue
        unlisted = tuple(qid for qid in ids if store.rows.get(qid, None) is None)
        if unlisted:
            problem = f"holds {len(unlisted)} traces the index does not list (truncated index?)"
            findings.append(Finding(path, problem, unlisted))
    return findings


def _consistency_findings(root: Path) -> list[Finding]:
    findings = []
    for path in consistency_files(root):
        try:
            read_consistency(path)
        except UserError as exc:
            findings.append(Finding(path, str(exc).removeprefix(f"{path}: ")))
    return findings


def verify_store(root: str | Path) -> tuple[TraceStore, list[Finding]]:
    """The store at ``root`` and every finding in its folder (empty: all is as recorded)."""
    damaged_rows: list[str] = []
    store = TraceStore(root, check_traces=False, damaged_rows=damaged_rows)
    findings = []
    if damaged_rows:
        problem = f"{len(damaged_rows)} rows differ from their checksums (edited by hand?)"
        findings.append(Finding(store.root / INDEX, problem, tuple(damaged_rows)))
    findings += _shard_findings(store)
    findings += _unlisted_findings(store)
    findings += _consistency_findings(store.root)
    return store, findings
