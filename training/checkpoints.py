"""Checkpoints given to ``test``/``predict``/``fit --ckpt_path``: read without running code, and
compared with the configured model and graphs.

LightningCLI would quietly replace the configured model with the checkpoint's (a GAT config
scoring a GCN, a layer-15 detector scoring layer-10 graphs); a contradiction is refused instead,
naming both values. The store to test on must be of the checkpoint's model (its graphs' widths,
and the model name when the training store is still there): checked before any graph is built.

``fit`` records the sha256 of each checkpoint it wrote in ``checkpoints/checksums.json`` (and
``test`` in its ``report.json``); a checkpoint that differs from its record is refused before it
is read.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from extraction import UserError, atomic_write_text, read_json
from extraction.store import TraceStore, file_sha256
from graphs import GraphSpec

# Set by Lightning on the live trainer (``"best"`` after a fit in the same process, ...).
LIGHTNING_CKPT_ALIASES = ("best", "last", "hpc", "registry")
# Model arguments that do not change what a trained model computes, and those the data decides.
NOT_THE_MODEL = ("lr", "weight_decay", "pos_weight", "threshold_rule", "in_channels", "edge_dim")
GRAPH_KEYS = tuple(field.name for field in dataclasses.fields(GraphSpec))
CHECKSUMS = "checksums.json"


def record_checksums(checkpoint_dir: Path) -> None:
    """The sha256 of every checkpoint in ``checkpoint_dir``, in its ``checksums.json``."""
    sums = {path.name: file_sha256(path) for path in sorted(checkpoint_dir.glob("*.ckpt"))}
    if sums:
        atomic_write_text(checkpoint_dir / CHECKSUMS, json.dumps(sums, indent=1))


def forget_checksums(checkpoint_dir: Path) -> None:
    """Before a fit rewrites the checkpoints: a killed fit leaves them unrecorded, not wrong."""
    (checkpoint_dir / CHECKSUMS).unlink(missing_ok=True)


def _check_recorded(path: Path) -> None:
    record = path.parent / CHECKSUMS
    if not record.is_file():
        return
    recorded = read_json(record).get(path.name)
    if recorded is not None and file_sha256(path) != recorded:
        raise UserError(
            f"--ckpt_path {path}: differs from the sha256 `fit` recorded in {record} (damaged or "
            "replaced); train again or restore the file"
        )


def resolve_alias(alias: str, checkpoint_dir: Path) -> Path | None:
    """The file Lightning's ``best``/``last`` names in a new process: ``best.ckpt`` for best, the
    newest checkpoint for last (None for the other aliases, which only a live trainer knows)."""
    if alias == "best":
        candidates = [checkpoint_dir / "best.ckpt"]
    elif alias == "last":
        candidates = sorted(checkpoint_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)[::-1]
    else:
        return None
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        raise UserError(
            f"--ckpt_path {alias}: no checkpoint in {checkpoint_dir}; run `fit` with this "
            "--trainer.default_root_dir first, or give the .ckpt file"
        )
    return existing[0]


def load_checkpoint(ckpt_path: str) -> dict:
    """A Lightning checkpoint of this toolkit (weights only: no code runs), or a one-line error."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(
            f"--ckpt_path {ckpt_path}: no such file ({path.resolve()}); `fit` writes "
            "{trainer.default_root_dir}/checkpoints/best.ckpt"
        )
    _check_recorded(path)
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # pickle, zip and torch errors of many types
        raise UserError(
            f"--ckpt_path {ckpt_path} is not a readable checkpoint ({type(exc).__name__}); give "
            "the best.ckpt that `fit` wrote"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"--ckpt_path {ckpt_path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _plain(value):
    """Tuples as lists, so a YAML list and a saved tuple compare equal."""
    return json.loads(json.dumps(value, default=str))


def check_checkpoint_matches(ckpt_path: str, model: dict, data: dict) -> None:
    checkpoint = load_checkpoint(ckpt_path)
    saved = dict(checkpoint.get("hyper_parameters") or {})
    saved_class = saved.pop("_class_path", None)
    saved_data = checkpoint.get("datamodule_hyper_parameters") or {}
    contradictions = []
    if saved_class is not None and model.get("class_path") != saved_class:
        contradictions.append(f"--model {model.get('class_path')} (checkpoint: {saved_class})")
    init_args = model.get("init_args") or {}
    for key, value in saved.items():
        if key in NOT_THE_MODEL or key.startswith("_") or key not in init_args:
            continue
        if _plain(init_args[key]) != _plain(value):
            contradictions.append(f"--model.init_args.{key} {init_args[key]} (checkpoint: {value})")
    # Checkpoints written before the graph spec (issue 8) kept its keys in the data section.
    saved_graph = saved_data.get("graph") or saved_data
    graph = data.get("graph") or {}
    for key in GRAPH_KEYS:
        if key in saved_graph and _plain(graph.get(key)) != _plain(saved_graph[key]):
            contradictions.append(
                f"--data.graph.{key} {graph.get(key)} (checkpoint: {saved_graph[key]})"
            )
    contradictions += _store_contradictions(checkpoint, data)
    if contradictions:
        raise UserError(
            f"{ckpt_path} was trained with another model or graphs: "
            + "; ".join(contradictions)
            + "; use that checkpoint's config (its run folder's config.yaml) or another checkpoint"
        )


def _store_contradictions(checkpoint: dict, data: dict) -> list[str]:
    """Each store to read (``traces``, ``predict_traces``) against the checkpoint's: the node
    feature width (what the model can read at all) and, when the training store is still there,
    the model that wrote it."""
    found = []
    for flag in ("traces", "predict_traces"):
        path = data.get(flag)
        if path and Path(path, "manifest.json").is_file():  # else the data module says why
            found += _one_store_contradictions(f"--data.{flag} {path}", path, checkpoint, data)
    return found


def _one_store_contradictions(where: str, path: str, checkpoint: dict, data: dict) -> list[str]:
    store = TraceStore(path)
    saved = checkpoint.get("hyper_parameters") or {}
    found = []
    graph = data.get("graph") or {}
    if "in_channels" in saved and isinstance(graph, dict):
        spec = GraphSpec.from_dict(graph).resolve(store.stored_blocks, store.min_attention)
        model = store.manifest.model
        widths = spec.widths(model.hidden_size, model.num_heads)
        if saved["in_channels"] != widths[0]:
            found.append(
                f"{where} gives {widths[0]} node features (checkpoint: "
                f"{saved['in_channels']}, a store of another model?)"
            )
    trained_on = (checkpoint.get("datamodule_hyper_parameters") or {}).get("traces")
    if trained_on and Path(trained_on, "manifest.json").is_file():
        theirs = TraceStore(trained_on).manifest.settings.model
        if theirs != store.manifest.settings.model:
            found.append(f"{where} holds {store.manifest.settings.model} (checkpoint: {theirs})")
    return found
