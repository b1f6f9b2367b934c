"""Concatenates safetensors files into one without loading their tensors.

A safetensors file is an 8-byte little-endian header length, a JSON header (``__metadata__``,
then per tensor its ``dtype``, ``shape`` and ``data_offsets`` into the data section), padded
with spaces to a multiple of 8 bytes, then the tensors' raw bytes. The combined header is
computed from the sources' headers alone, and each tensor's bytes are copied from its source
in bounded chunks: memory stays at one chunk, however large the result.

The layout is the one ``safetensors.torch.save_file`` writes for the same tensors: sorted by
dtype in the library's order (8-byte types first, so each tensor stays aligned to its element
size), then by name. So the result reads back with ``safe_open`` exactly like a ``save_file``
of the loaded tensors, and its data section is byte for byte the same.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

# safetensors' own order (its Dtype enum, descending): widest first, so offsets stay aligned.
DTYPE_ORDER = (
    "U64",
    "I64",
    "F64",
    "F32",
    "U32",
    "I32",
    "BF16",
    "F16",
    "U16",
    "I16",
    "F8_E4M3",
    "F8_E5M2",
    "I8",
    "U8",
    "BOOL",
)
_RANK = {dtype: rank for rank, dtype in enumerate(DTYPE_ORDER)}
_CHUNK = 2**22
METADATA = "__metadata__"


def read_header(path: Path) -> tuple[int, dict]:
    """``(offset of the data section, header)`` of a safetensors file."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return 8 + length, json.loads(handle.read(length))


def encode_header(header: dict) -> bytes:
    """The header as ``save_file`` writes it: length prefix, compact JSON, space padding."""
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def concat_safetensors(sources: list[Path], target: Path, metadata: dict[str, str]) -> None:
    """Write the tensors of ``sources`` into ``target`` (with ``metadata`` as its
    ``__metadata__``). A name in several sources keeps the last source's tensor."""
    where: dict[str, tuple[int, dict, int]] = {}  # name → (source number, entry, data start)
    for number, source in enumerate(sources):
        start, header = read_header(source)
        for name, entry in header.items():
            if name != METADATA:
                where[name] = (number, entry, start)
    unknown = {entry["dtype"] for _, entry, _ in where.values()} - set(_RANK)
    if unknown:
        raise ValueError(f"cannot place tensors of dtype {sorted(unknown)} in a shard")
    order = sorted(where, key=lambda name: (_RANK[where[name][1]["dtype"]], name))
    header: dict = {METADATA: metadata}
    copies: list[list[tuple[int, int, int]]] = [[] for _ in sources]  # (from, to, length)
    offset = 0
    for name in order:
        number, entry, start = where[name]
        begin, end = entry["data_offsets"]
        header[name] = {
            "dtype": entry["dtype"],
            "shape": entry["shape"],
            "data_offsets": [offset, offset + end - begin],
        }
        copies[number].append((start + begin, offset, end - begin))
        offset += end - begin
    prefix = encode_header(header)
    with target.open("wb", buffering=0) as out:
        out.write(prefix)
        out.truncate(len(prefix) + offset)
        # One source at a time, read front to back; the writes land at their computed offsets.
        for source, spans in zip(sources, copies, strict=True):
            with source.open("rb") as handle:
                for position, destination, length in spans:
                    _copy(handle, position, out, len(prefix) + destination, length)


def _copy(source, position: int, out, destination: int, length: int) -> None:
    source.seek(position)
    while length:
        block = source.read(min(length, _CHUNK))
        if not block:
            raise ValueError(f"{source.name} ends before its header says (truncated?)")
        os.pwrite(out.fileno(), block, destination)
        destination += len(block)
        length -= len(block)
