"""Transfer: detectors trained on one store's train split, scored on the whole of another store
of the same model (``--transfer_traces``).

Trace detectors see the two stores' features side by side (the other store's rows as their
test split, so everything is still chosen on this store's train and val); graph detectors score
the other store's graphs with their best checkpoint. Only the scored answers count: every
labelled trace of generation 0 with answer tokens (an empty answer has no answer graph).

A cached result records which stores it scored (their identities); a store a later run adds is
scored by the kept detector, so adding one trains nothing (:func:`kept_checkpoint`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import UserError
from extraction.store import TraceStore, label_source
from graphs import SCORED_GENERATION, HallucinationGraphDataset
from training.benchmark_stats import seed_metrics
from training.checkpoints import VERSION_CHECKPOINTS
from training.detectors.features import StoreFeatures, load_or_compute
from training.detectors.fitting import Split

# Prefix of the other store's rows among the joined features (ids may repeat across stores).
OTHER = "transfer:"


@dataclass
class TransferStore:
    """Another store to score: its name in reports, the store, its labels and features."""

    name: str
    store: TraceStore
    labels: dict[str, int]
    labels_name: str
    features: StoreFeatures | None = None

    @property
    def question_ids(self) -> list[str]:
        return list(self.labels)

    @property
    def label_array(self) -> np.ndarray:
        return np.array(list(self.labels.values()))

    def graph_root(self, root: str | Path) -> Path:
        """Where its graphs are built (once, for every seed): under the benchmark's graph
        root, named after the store."""
        resolved = str(self.store.root.resolve())
        tag = hashlib.sha256(resolved.encode()).hexdigest()[:8]
        return Path(root) / "transfer" / f"{self.store.root.name}-{tag}"

    def identity(self) -> list:
        return [self.name, self.store.manifest_sha256, self.labels_name]


def open_transfer(paths: list[str], store: TraceStore, labels: str) -> list[TransferStore]:
    """The transfer stores, checked before any work: a store of another model, or with other
    stored blocks, is a one-line error."""
    model = store.manifest.settings.model
    out = []
    for path in paths:
        other = TraceStore(path)  # UserError when it is not a store
        if other.manifest.settings.model != model:
            raise UserError(
                f"--transfer_traces {path} holds {other.manifest.settings.model} traces but this "
                f"benchmark's store holds {model}; transfer needs a store of the same model"
            )
        if other.stored_blocks != store.stored_blocks:
            raise UserError(
                f"--transfer_traces {path} stores blocks {other.stored_blocks}, this store "
                f"{store.stored_blocks}; extract both with the same --layers"
            )
        source = label_source(other, labels)
        kept = {
            qid: label
            for qid, label in source.labels.items()
            if label is not None
            and other.rows[qid].generation == SCORED_GENERATION
            and other.rows[qid].n_answer_tokens
        }
        if len(set(kept.values())) < 2:
            raise UserError(
                f"--transfer_traces {path} needs labelled answers of both classes ({len(kept)} "
                "labelled); label it first (`python -m extraction label`)"
            )
        name = other.root.name if other.root.name not in {t.name for t in out} else str(path)
        out.append(TransferStore(name, other, kept, source.name))
    return out


def load_features(targets: list[TransferStore], root: str | Path, k: int) -> float:
    """Every transfer store's detector features (cached under the benchmark's graph root);
    the seconds spent computing them."""
    seconds = 0.0
    for target in targets:
        target.features, spent = load_or_compute(
            target.store, target.graph_root(root) / "detector_features", k
        )
        seconds += spent
    return seconds


def _joined(features: StoreFeatures, other: StoreFeatures) -> StoreFeatures:
    """Both stores' features as one (the other's ids prefixed); arrays both have."""
    if features.layers != other.layers:
        raise UserError(f"stored blocks differ: {features.layers} and {other.layers}")
    keys = features.arrays.keys() & other.arrays.keys()
    return StoreFeatures(
        question_ids=features.question_ids + [OTHER + qid for qid in other.question_ids],
        layers=features.layers,
        arrays={k: np.concatenate([features.arrays[k], other.arrays[k]]) for k in keys},
        sampling_skip=features.sampling_skip or other.sampling_skip,
        generations=np.concatenate([features.generations, other.generations]),
    )


def trace_transfer_scores(
    detector, features: StoreFeatures, split: Split, seed: int, target: TransferStore
) -> np.ndarray | None:
    """The detector's scores of the target's answers, fitted and chosen on this store's train
    and val; None when the detector cannot run there (a sampling detector on one answer per
    question)."""
    if detector.needs_sampling and target.features.sampling_skip:
        return None
    joined = _joined(features, target.features)
    rows = joined.rows([OTHER + qid for qid in target.question_ids])
    labels = {**split.labels, "test": target.label_array}
    return detector.run(joined, Split({**split.rows, "test": rows}, labels), seed).test_scores


def unscored(result: dict | None, targets: list[TransferStore]) -> list[TransferStore]:
    """The targets a cached result has not scored as they are now (all of them without one)."""
    if result is None:
        return list(targets)
    scored = result.get("transfer_identity") or {}
    return [t for t in targets if scored.get(t.name) != t.identity()]


def with_transfer(result: dict, targets: list[TransferStore], scores: dict) -> dict:
    """``result`` with each target's metrics (None where the detector cannot run there) and
    identity added; other stores it scored before stay."""
    entries = {
        t.name: None
        if scores[t.name] is None
        else {
            **seed_metrics(np.asarray(scores[t.name], float), t.label_array),
            "n": len(t.labels),
            "n_hallucinated": int(t.label_array.sum()),
        }
        for t in targets
    }
    identities = {t.name: t.identity() for t in targets}
    return {
        **result,
        "transfer": {**(result.get("transfer") or {}), **entries},
        "transfer_identity": {**(result.get("transfer_identity") or {}), **identities},
    }


def kept_checkpoint(result: dict, run_dir: Path) -> Path | None:
    """The best checkpoint a graph detector's cached result came from: the one its settings name
    (relative to ``run_dir``), or, for results cached before they named it, the only version's
    ``best.ckpt``. None when it is gone or not the only one."""
    named = result["settings"].get("checkpoint")
    if named is not None:
        candidates = [run_dir / named]
    else:
        candidates = sorted(run_dir.glob(f"{VERSION_CHECKPOINTS}/best.ckpt"))
    return candidates[0] if len(candidates) == 1 and candidates[0].is_file() else None


def transfer_graphs(spec, target: TransferStore, root: str | Path) -> HallucinationGraphDataset:
    """The target's graphs of this graph spec, built once under the benchmark's graph root."""
    return HallucinationGraphDataset(
        target.graph_root(root), traces=target.store.root, spec=spec, labels=target.labels_name
    )


def graph_transfer_scores(
    cli, target: TransferStore, root: str | Path, checkpoint: Path
) -> np.ndarray:
    """A graph detector's scores of the target's answers, from its best ``checkpoint`` (loaded
    as weights only)."""
    from torch_geometric.loader import DataLoader

    dataset = transfer_graphs(cli.datamodule.spec, target, root)
    wanted = set(target.labels)
    dataset.entries = [entry for entry in dataset.entries if entry["question_id"] in wanted]
    loader = DataLoader(dataset, batch_size=cli.datamodule.hparams.batch_size)
    batches = cli.trainer.predict(
        cli.model, dataloaders=loader, ckpt_path=checkpoint, weights_only=True
    )
    scores = {
        qid: float(score)
        for batch in batches
        for qid, score in zip(batch["question_id"], batch["score"].tolist(), strict=True)
    }
    missing = [qid for qid in target.labels if qid not in scores]
    if missing:
        raise UserError(
            f"{len(missing)} answers of {target.name} have no graph (e.g. {missing[0]}); "
            f"rebuild {target.graph_root(root)}"
        )
    return np.array([scores[qid] for qid in target.labels])
