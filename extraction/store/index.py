"""The index: ``index.jsonl``, one JSON row per question, appended only after its shard exists.

A crash can leave a half-written last line; readers ignore it and the writer cuts it off.
When a question appears more than once (a retried error), the last row wins.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import UserError, atomic_write_text

log = logging.getLogger(__name__)

LABEL_FIELDS = ("label", "label_method", "label_score")
INDEX_LOCK = ".index.lock"


def read_index(path: Path) -> dict[str, dict]:
    """Rows keyed by question id, in first-seen order, last row winning."""
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    with path.open("rb") as handle:
        data = handle.read()
    complete, _, partial = data.rpartition(b"\n")
    if partial.strip():
        log.warning("ignoring a half-written last line in %s (an interrupted run)", path)
    for number, line in enumerate(complete.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rows[row["question_id"]] = row
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise UserError(
                f"{path} line {number}: not an index row ({type(exc).__name__}: "
                f"{getattr(exc, 'msg', exc)}); the index is damaged, restore it or rerun with "
                "--overwrite"
            ) from None
    return rows


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive use of the index. Ranks of a multi-process run share it, and a rewrite replaces
    the file: the lock is a separate file, so an appender never writes into a replaced one."""
    with (path.parent / INDEX_LOCK).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def truncate_partial_line(path: Path) -> None:
    """Cut a half-written last line so the next append starts on a fresh line."""
    if not path.exists():
        return
    with locked(path), path.open("r+b") as handle:
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            handle.truncate(keep)


def append_rows(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with locked(path), path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def update_rows(path: Path, updates: dict[str, dict]) -> None:
    """Set these fields of these questions' rows (``{question_id: {field: value}}``), keeping
    every other field as the file has it (one atomic rewrite of the index)."""
    with locked(path):
        current = read_index(path)
        for question_id, fields in updates.items():
            current[question_id] = {**current[question_id], **fields}
        rewrite_index(path, list(current.values()))


def rewrite_index(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
