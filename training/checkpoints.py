"""Checkpoints given to ``test``/``predict``/``fit --ckpt_path``: read without running code, and
compared with the configured model and graphs.

LightningCLI would quietly replace the configured model with the checkpoint's (a GAT config
scoring a GCN, a layer-15 detector scoring layer-10 graphs); a contradiction is refused instead,
naming both values.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import torch

from common import UserError
from graphs import GraphSpec

# Set by Lightning on the live trainer (``"best"`` after a fit in the same process, ...).
LIGHTNING_CKPT_ALIASES = ("best", "last", "hpc", "registry")
# Model arguments that do not change what a trained model computes, and those the data decides.
NOT_THE_MODEL = ("lr", "weight_decay", "pos_weight", "threshold_rule", "in_channels", "edge_dim")
GRAPH_KEYS = tuple(field.name for field in dataclasses.fields(GraphSpec))
LATEST = Path("checkpoints") / "best.ckpt"

log = logging.getLogger(__name__)


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
    if contradictions:
        raise UserError(
            f"{ckpt_path} was trained with another model or graphs: "
            + "; ".join(contradictions)
            + "; use that checkpoint's config (its run folder's config.yaml) or another checkpoint"
        )
