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
import logging
import os
from pathlib import Path

import torch

from common import UserError, atomic_write_text, read_json
from extraction.store import TraceStore, file_sha256
from graphs import GraphSpec, new_names

# Set by Lightning on the live trainer (``"best"`` after a fit in the same process, ...).
LIGHTNING_CKPT_ALIASES = ("best", "last", "hpc", "registry")
# Model arguments that do not change what a trained model computes, and those the data decides.
NOT_THE_MODEL = ("lr", "weight_decay", "pos_weight", "threshold_rule", "in_channels", "edge_dim")
GRAPH_KEYS = tuple(field.name for field in dataclasses.fields(GraphSpec))
CHECKSUMS = "checksums.json"
LATEST = Path("checkpoints") / "best.ckpt"
VERSION_CHECKPOINTS = "lightning_logs/version_*/checkpoints"

log = logging.getLogger(__name__)


def record_checksums(checkpoint_dir: Path) -> None:
    """The sha256 of every checkpoint in ``checkpoint_dir`` (a fit's own version folder), in its
    ``checksums.json``."""
    sums = {
        path.name: file_sha256(path)
        for path in sorted(checkpoint_dir.glob("*.ckpt"))
        if not path.is_symlink()
    }
    if sums:
        atomic_write_text(checkpoint_dir / CHECKSUMS, json.dumps(sums, indent=1))


def forget_checksums(checkpoint_dir: Path) -> None:
    """Before a fit rewrites the checkpoints: a killed fit leaves them unrecorded, not wrong."""
    (checkpoint_dir / CHECKSUMS).unlink(missing_ok=True)


def _check_recorded(path: Path) -> None:
    """Against the record beside the real file: ``checkpoints/best.ckpt`` is a link into the
    version folder whose ``checksums.json`` lists it."""
    real = path.resolve()
    record = real.parent / CHECKSUMS
    if not record.is_file():
        return
    recorded = read_json(record).get(real.name)
    if recorded is not None and file_sha256(real) != recorded:
        raise UserError(
            f"--ckpt_path {path}: {real} differs from the sha256 `fit` recorded in {record} "
            "(damaged or replaced); train again or restore the file"
        )


def resolve_alias(alias: str, root_dir: Path, dirpath: Path | None = None) -> Path | None:
    """The file Lightning's ``best``/``last`` names in a new process (None for the other aliases,
    which only a live trainer knows). ``best``: ``{root_dir}/checkpoints/best.ckpt``, the link to
    the newest fit's (``dirpath/best.ckpt`` when ``--checkpoint.dirpath`` is set); ``last``: the
    newest checkpoint file of any version (or of ``dirpath``)."""
    folders = [dirpath] if dirpath else [root_dir / "checkpoints"]
    if alias == "best":
        candidates = [folders[0] / "best.ckpt"]
    elif alias == "last":
        if not dirpath:
            folders += sorted(root_dir.glob(VERSION_CHECKPOINTS))
        files = {path.resolve() for folder in folders for path in folder.glob("*.ckpt")}
        candidates = sorted(
            (path for path in files if path.is_file()),
            key=lambda path: path.stat().st_mtime,
            reverse=True,
        )
    else:
        return None
    existing = [path for path in candidates if path.is_file()]
    if not existing:
        where = dirpath or f"{root_dir / 'checkpoints'} or {root_dir / VERSION_CHECKPOINTS}"
        raise UserError(
            f"--ckpt_path {alias}: no checkpoint in {where}; run `fit` with this "
            "--trainer.default_root_dir first, or give the .ckpt file"
        )
    return existing[0]


def point_latest_checkpoint(best: str, root_dir: str) -> Path | None:
    """Make ``{root_dir}/checkpoints/best.ckpt`` a relative symlink to ``best`` (this fit's own
    ``lightning_logs/version_N/checkpoints/best.ckpt``), replaced atomically; the path that
    `test`/`predict` name keeps working and every version keeps its checkpoint. A real file there
    (written before checkpoints had versions) is kept as ``best-unversioned*.ckpt``. Returns the
    link, or None when ``best`` is that very path (``--checkpoint.dirpath`` set to it)."""
    link = Path(root_dir) / LATEST
    if link.resolve() == Path(best).resolve() and not link.is_symlink():
        return None
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        kept = link.with_name("best-unversioned.ckpt")
        number = 0
        while kept.exists():
            number += 1
            kept = link.with_name(f"best-unversioned-{number}.ckpt")
        link.rename(kept)
        log.warning("kept the unversioned %s as %s", link, kept)
    target = os.path.relpath(Path(best).resolve(), link.parent.resolve())
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    os.replace(temporary, link)
    return link


def load_checkpoint(ckpt_path: str) -> dict:
    """A Lightning checkpoint of this toolkit (weights only: no code runs), or a one-line error."""
    path = Path(ckpt_path)
    if path.is_symlink() and not path.exists():
        raise UserError(
            f"--ckpt_path {ckpt_path} links to {path.readlink()}, which no longer exists (its "
            "version folder was removed); name another version's checkpoint or fit again"
        )
    if not path.is_file():
        raise UserError(
            f"--ckpt_path {ckpt_path}: no such file ({path.resolve()}); `fit` writes "
            "{trainer.default_root_dir}/checkpoints/best.ckpt (a link to its version's own)"
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
    # Checkpoints written before the graph spec (issue 8) kept its keys in the data section;
    # those before issue 22 (and old configs) name the blocks layer / layers / hidden_layer.
    saved_graph = new_names(saved_data.get("graph") or saved_data)
    graph = new_names(data.get("graph") or {})
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
