"""The graph cache behind :class:`graphs.HallucinationGraphDataset`: where a built dataset lives,
how traces are read in bounded chunks, and how graph files are written, checked and loaded.

A cache folder is ``root/processed/<blocks>-<nodes>-<hash>``; the hash covers everything that
changes a graph (the resolved :class:`~graphs.spec.GraphSpec`, the store and its labels, the
``pre_transform``/``pre_filter``), so a new option builds a new cache, never a stale one. It
holds one ``torch.save`` file per graph and ``graphs.json``, written last, which lists each
file with its sha256: a graph file that is missing, changed or swapped for another is a
one-line error when it is loaded, and ``python -m graphs verify ROOT`` checks every one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from torch_geometric.data import Data

from common import UserError, atomic_open, read_json, shown_path
from extraction.store import TraceStore

# Bump when the content of a processed graph changes, so old caches are never served.
# 2: the head mean is numpy's sequential float32 mean in every case (torch's blocked sum differed
# from it in the last bit on some shapes). The cache key is the resolved GraphSpec since issue 8:
# caches built before it are not found again and are rebuilt.
GRAPH_FORMAT = 2
RECORD = "graphs.json"
# Traces whose graphs are built together (graphs.build.traces_to_graphs): at most this many, and
# at most this many attention and hidden-state elements, over the chosen blocks, at once.
CHUNK_TRACES = 64
CHUNK_ELEMENTS = 2**24
_REBUILD = "rebuild with `python -m graphs build --force_reload true`"


def _stable_repr(obj: object) -> str:
    """``repr`` without memory addresses, so a pre_transform keys the cache the same each run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def cache_name(identity: dict, blocks: list[int], multi_block: bool, combine: str, nodes: str):
    """The folder name of a built dataset: readable blocks and tokens, then a hash of
    ``identity`` (with the pre_transform and pre_filter given as objects). The names and the
    hashed graph keys are those from before issue 22 (``layer15``, :meth:`GraphSpec.cache_key`),
    so that a cache built then keeps its folder."""
    keyed = {
        "format": GRAPH_FORMAT,
        **identity,
        "pre_transform": _stable_repr(identity.get("pre_transform")),
        "pre_filter": _stable_repr(identity.get("pre_filter")),
    }
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()
    if multi_block:
        kind = "union" if combine == "union" else "layers"
        layers = kind + "-".join(map(str, blocks[:4])) + "-etc" * (len(blocks) > 4)
    else:
        layers = f"layer{blocks[0]}"
    return f"{layers}-{nodes}-{digest[:12]}"


def trace_chunks(store: TraceStore, question_ids: list[str], n_blocks: int) -> Iterator[list[str]]:
    """``question_ids`` in order, in chunks that bound the memory of a build."""
    heads, hidden = store.manifest.model.num_heads, store.manifest.model.hidden_size
    chunk, size = [], 0
    for question_id in question_ids:
        seq_len = store.row(question_id).seq_len
        elements = n_blocks * (heads * seq_len**2 + hidden * seq_len)
        if chunk and (len(chunk) == CHUNK_TRACES or size + elements > CHUNK_ELEMENTS):
            yield chunk
            chunk, size = [], 0
        chunk.append(question_id)
        size += elements
    if chunk:
        yield chunk


def save_graph(path: str, data: Data) -> str:
    """Write one graph file atomically; its sha256 (recorded in ``graphs.json``)."""
    buffer = io.BytesIO()
    torch.save(_own_memory(data.to_dict()), buffer)
    payload = buffer.getvalue()
    with atomic_open(path, "wb") as handle:
        handle.write(payload)
    return hashlib.sha256(payload).hexdigest()


def load_graph(path: str, sha256: str | None = None) -> dict:
    """A graph file as a dict of tensors and plain values, with ``weights_only=True`` and no
    fallback: a file that needs more (pickled code) is refused, never run. With ``sha256``
    (what ``graphs.json`` recorded; caches built before it have none) a changed file is refused
    before it is unpickled. A graph built before issue 22 names its blocks ``layer`` /
    ``layers``; they are read as ``block`` / ``blocks``."""
    try:
        payload = Path(path).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{shown_path(path)} is missing; {_REBUILD}") from None
    if sha256 is not None and hashlib.sha256(payload).hexdigest() != sha256:
        raise UserError(
            f"{path} differs from the sha256 in {RECORD} (changed or swapped); {_REBUILD}, "
            "`python -m graphs verify ROOT` checks every file"
        )
    try:
        values = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a plain graph file, refused without running it ({type(exc).__name__}: "
            f"{reason[:120]}); delete the folder and rebuild if you did not make it"
        ) from None
    for old, new in (("layer", "block"), ("layers", "blocks")):
        if old in values:
            values[new] = values.pop(old)
    return values


def read_record(path: str | Path) -> dict:
    """A built dataset's ``graphs.json``; a graph file named outside its folder is refused."""
    record = read_json(path)
    try:
        names = [entry["file"] for entry in record["graphs"]]
    except (KeyError, TypeError) as exc:
        raise UserError(
            f"{path}: damaged record ({type(exc).__name__}: {exc}); {_REBUILD}"
        ) from None
    if outside := [
        name
        for name in names
        if not isinstance(name, str) or os.path.basename(name) != name or name.startswith(".")
    ]:
        raise UserError(
            f"{path}: graph file {outside[0]!r} is not a file of its folder; {_REBUILD}"
        )
    return record


def verify_caches(root: str | Path) -> list[str]:
    """One line per problem of every built dataset under ``root``: a graph file missing or
    unlike its recorded sha256, a file the record does not list, a damaged record."""
    problems = []
    for record_path in sorted(Path(root).glob(f"processed/*/{RECORD}")):
        folder = record_path.parent
        try:
            entries = read_record(record_path)["graphs"]
        except UserError as exc:
            problems.append(str(exc))
            continue
        listed = {entry["file"]: entry.get("sha256") for entry in entries}
        for name, recorded in listed.items():
            path = folder / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif recorded is None:
                problems.append(f"{path}: no sha256 recorded (built before checksums); {_REBUILD}")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
                problems.append(f"{path}: differs from the sha256 in {RECORD}")
        for path in sorted(folder.glob("*.pt")):
            if path.name not in listed:
                problems.append(f"{path}: not listed in {RECORD}")
    return problems


def _own_memory(mapping: dict) -> dict:
    """Views copied into memory of their own: the batched builder's graphs share tensors with
    the other graphs of their chunk, which ``torch.save`` would write whole into each file."""
    return {
        key: value.clone(memory_format=torch.contiguous_format)
        if torch.is_tensor(value) and value.untyped_storage().nbytes() > value.nbytes
        else value
        for key, value in mapping.items()
    }
