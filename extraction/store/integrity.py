"""Checksums and structural checks of a store's files.

The writer records, in each index row, the sha256 and size of the trace's shard file
(``shard_sha256``, ``shard_bytes``), a sha256 of the trace's own tensors (``trace_sha256``:
a digest of the per-tensor sha256s its shard record lists, each over name, dtype, shape and
bytes; stores written before those lists: one digest over every tensor, in key order) and a
sha256 of the row's own fields (``row_sha256``, so a label edited by hand is found; ``label``
rewrites it). The reader checks a row's checksum when it opens the store and each tensor's as
it reads it (so a graph of one layer hashes that layer, not the whole trace);
:mod:`extraction.store.verify` recomputes everything, for the whole folder.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import torch

ROW_SHA256 = "row_sha256"
_CHUNK = 2**22
# safetensors refuses a header above 100 MB; so do we, before allocating it.
_MAX_HEADER = 100_000_000


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def row_sha256(row: dict) -> str:
    """The checksum of an index row's own fields (everything but ``row_sha256``)."""
    fields = {key: value for key, value in row.items() if key != ROW_SHA256}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def sealed(row: dict) -> dict:
    """The row with its checksum, as the index stores it."""
    return {**row, ROW_SHA256: row_sha256(row)}


def row_intact(row: dict) -> bool:
    """False when a row's fields differ from its checksum (rows of older stores have none)."""
    recorded = row.get(ROW_SHA256)
    return recorded is None or recorded == row_sha256(row)


def _update(digest, key: str, tensor: torch.Tensor) -> None:
    tensor = tensor.contiguous().cpu()
    digest.update(f"{key}|{tensor.dtype}|{list(tensor.shape)}|".encode())
    digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """One trace's tensors as stored, all in one digest: ``trace_sha256`` of stores written
    before per-tensor checksums (checking it reads the whole trace)."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        _update(digest, key, tensors[key])
    return digest.hexdigest()


def tensor_sha256(key: str, tensor: torch.Tensor) -> str:
    """One tensor as stored: its entry in its trace record's ``tensor_sha256``."""
    digest = hashlib.sha256()
    _update(digest, key, tensor)
    return digest.hexdigest()


def hashes_sha256(hashes: dict[str, str]) -> str:
    """``trace_sha256`` of a trace whose record lists a sha256 per tensor: a digest of that
    list, so the index vouches for the list and a reader hashes only the tensors it reads."""
    return hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()


def header_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (None when header and size agree).

    Reads only the header: a truncated file, a damaged header or a header whose tensors run
    past the end of the file is found without reading any tensor data.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"{size} bytes: too short for a safetensors header"
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER, size - 8):
                return f"header length {length} does not fit in a {size}-byte file (truncated?)"
            header = json.loads(handle.read(length))
    except FileNotFoundError:
        return "missing"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"damaged header ({type(exc).__name__})"
    if not isinstance(header, dict):
        return "damaged header (not a JSON object)"
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            return f"damaged header (entry {key!r})"
    expected = 8 + length + end
    if expected != size:
        return f"{size} bytes, but the header describes {expected} (truncated or padded)"
    return None
