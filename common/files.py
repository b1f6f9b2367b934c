"""Files every stage writes and reads: atomic writes, and JSON read with one-line errors.

Every stage writes a file a reader may open (shards, index, manifest, graphs, splits, reports,
scores, figures, pickles) the same way: the bytes go to a temp file in the same directory
(``.{name}.{random}.tmp``), are fsynced, and the temp file is renamed over the target. A reader
sees the old file or the new one, never half of one. A crash leaves at most a temp file: the
store's next writer removes its own; elsewhere nothing reads them. The temp file is created as a
plain ``open`` would create the file (``0666 & ~umask``), not owner-only like ``mkstemp``'s, so
what lands at the target is as readable as the umask allows (a group-shared folder, a web server).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from common.errors import UserError, shown_path


def temp_pattern(name: str) -> str:
    """Glob of the temp files a write of ``name`` may leave behind after a crash."""
    return f".{name}.*.tmp"


def plain_temp(directory: Path, prefix: str, suffix: str = "", folder: bool = False) -> Path:
    """A new, uniquely named file (or ``folder``) in ``directory``, with the permissions a plain
    ``open`` (``mkdir``) gives, ``0666`` (``0777``) less the umask; ``tempfile``'s are 0600/0700."""
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if folder:
                path.mkdir(mode=0o777)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temp name {prefix}*{suffix} in {directory}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path to write (for writers that take a file name, like ``safetensors``); on
    success it is fsynced and renamed to ``path``, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plain_temp(path.parent, f".{path.name}.", ".tmp")
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` whose result appears at ``path`` only once the block succeeds."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, tmp.open(mode, **kwargs) as handle:
        yield handle
        handle.flush()


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def save_figure(fig, path: str | Path, **options) -> Path:
    """A matplotlib figure written atomically, in the format of the path's suffix (PNG when it
    has none): a reader never opens half an image."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".").lower() or "png", **options)
    return path


def read_json(path: str | Path):
    """A JSON file; a missing or damaged one is a one-line :class:`UserError` naming it (and the
    line)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{shown_path(path)} does not exist; check the path") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); the file is damaged"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; the file is damaged") from None
