"""File names and tensor keys inside a store directory, and the packed attention layout."""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from pathlib import Path

import torch

from extraction.errors import UserError

MANIFEST = "manifest.json"
INDEX = "index.jsonl"
LOCK = ".lock"
SHARD_FORMAT = "hallugraph-shard/1"
SHARD_SUFFIX = ".safetensors"
_SHARD_NUMBER = re.compile(r"_shard_(\d{4,})\.safetensors$")


def shard_name(prefix: str, number: int) -> str:
    """The seed's naming, ``{model}_{dataset}_batch_{num:04d}``, with ``shard`` for ``batch``."""
    return f"{prefix}_shard_{number:04d}{SHARD_SUFFIX}"


def shard_number(name: str) -> int:
    match = _SHARD_NUMBER.search(name)
    if match is None:
        raise ValueError(f"not a shard file name: {name}")
    return int(match.group(1))


def tensor_key(question_id: str, kind: str, index: int | None = None) -> str:
    """``{question_id}/{kind}`` or ``{question_id}/{kind}.{index}``: kind is one of
    ``tokens``, ``hidden_states``, ``attentions``, ``token_logprobs``, ``token_entropy``."""
    return f"{question_id}/{kind}" if index is None else f"{question_id}/{kind}.{index}"


def _lower_triangle(seq_len: int) -> torch.Tensor:
    """Flat positions ``i * T + j`` of the lower triangle (j <= i), row by row."""
    rows, cols = torch.tril_indices(seq_len, seq_len)
    return rows * seq_len + cols


def pack_causal(attention: torch.Tensor) -> torch.Tensor:
    """``[heads, T, T]`` causal attention → ``[heads, T(T+1)/2]``: the upper triangle is zero by
    construction, so storing it would double the bytes for nothing."""
    seq_len = attention.shape[-1]
    flat = attention.reshape(attention.shape[0], seq_len * seq_len)
    return flat.index_select(1, _lower_triangle(seq_len))


def unpack_causal(packed: torch.Tensor, seq_len: int) -> torch.Tensor:
    # index_copy_ on the flat view: ~150x faster than advanced-index assignment on 2 CPU cores.
    full = packed.new_zeros((packed.shape[0], seq_len * seq_len))
    full.index_copy_(1, _lower_triangle(seq_len), packed)
    return full.view(packed.shape[0], seq_len, seq_len)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text(encoding="utf-8"))


def acquire_lock(root: Path, name: str = LOCK):
    """An exclusive, non-blocking lock on the store; released when the handle is closed or the
    process dies (even by SIGKILL), so a crash never leaves the store locked. The ranks of a
    multi-process run each hold their own (``.lock.rank{r}``)."""
    handle = (root / name).open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(
            f"another process is writing to {root}; wait for it to finish or pick another "
            "--output-dir"
        ) from None
    return handle
