"""The ``LightningDataModule``: the graph dataset's fixed train/val/test splits as PyG loaders.

Graph building belongs to :mod:`graphs`; this module only chooses the options, builds the cache
once (``prepare_data`` runs on one process per machine under DDP), and reports what the models
need to know about the data (feature widths, class balance, a hash of exactly what was used).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from lightning.pytorch import LightningDataModule
from lightning.pytorch.trainer.states import TrainerFn
from torch_geometric.loader import DataLoader

from common import UserError
from extraction.store import TraceStore
from graphs import SPLITS, GraphSpec, HallucinationGraphDataset, SplitBy

log = logging.getLogger(__name__)


class HallucinationGraphDataModule(LightningDataModule):
    """Attention graphs of one trace store, split by question id (the same split for every
    detector, see ``graphs.HallucinationGraphDataset``).

    Args:
        traces: trace store directory written by ``python -m extraction``.
        root: graph dataset directory (processed graphs and ``splits.json``).
        graph: which graphs (:class:`graphs.GraphSpec`): a mapping of graph options, or a
            graph spec file such as ``configs/graphs/layer15.yaml``; it names ``block`` or
            ``blocks`` (the old names ``layer``/``layers`` still read).
        split_seed: seed of the stratified split.
        split_ratios: train/val/test fractions.
        batch_size: graphs per batch.
        num_workers: data loader worker processes.
        predict_traces: store to score with ``predict``; default: every trace of ``traces``.
        predict_root: graph dataset directory for ``predict_traces``; default: a folder under
            ``root`` named after the store.
        labels: the labels to train and score on: ``index`` (default: those stored in the
            store's index), ``judged`` (the packaged judged answers of the store's model and
            dataset, docs/LABELS.md) or a judgement JSONL file. Every report names them.
        split_by: ``question`` (the stratified split) or ``relation``: whole relations of a
            fact store held out (train on some relations, validate and test on others).
        train_size: train on the traces of this many train questions only, a seeded subset
            nested in every larger one (learning curves); val and test stay whole.
    """

    def __init__(
        self,
        traces: str,
        root: str,
        graph: GraphSpec,
        split_seed: int = 0,
        split_ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
        batch_size: int = 32,
        num_workers: int = 0,
        predict_traces: str | None = None,
        predict_root: str | None = None,
        labels: str = "index",
        split_by: SplitBy = "question",
        train_size: int | None = None,
    ) -> None:
        arguments = {key: value for key, value in locals().items() if key != "self"}
        arguments.pop("__class__", None)
        super().__init__()
        if batch_size < 1 or num_workers < 0:
            raise UserError(
                f"--data.batch_size {batch_size} / --data.num_workers {num_workers}: give a batch "
                "size of at least 1 and a non-negative number of workers"
            )
        if isinstance(graph, dict):  # a data module rebuilt from saved hyperparameters
            graph = GraphSpec.from_dict(graph)
        # Plain values in the hyperparameters, so a checkpoint loads with weights_only=True.
        self.save_hyperparameters({**arguments, "graph": graph.as_dict()})
        self.store = TraceStore(traces)  # UserError when it is not a store
        # The spec as given ("all" stays "all" in the hyperparameters) and resolved for the store:
        self.spec = graph.resolve(self.store.stored_blocks, self.store.min_attention)
        model = self.store.manifest.model
        self.num_node_features: int
        self.num_edge_features: int | None
        self.num_node_features, self.num_edge_features = self.spec.widths(
            model.hidden_size, model.num_heads
        )
        self.datasets: dict = {}
        self.pos_weight: float | None = None

    @property
    def graph_options(self) -> dict:
        """What decides the graphs and the split (no paths, no loader settings): the resolved
        graph spec, the split seed and ratios."""
        return self._options(self.spec.as_dict())

    def _options(self, spec: dict) -> dict:
        split = {"split_seed": self.hparams.split_seed}
        # Named only when not the default, so earlier results keep their fingerprints.
        split |= {"split_by": "relation"} if self.hparams.split_by == "relation" else {}
        split |= {"train_size": self.hparams.train_size} if self.hparams.train_size else {}
        return {**spec, **split, "split_ratios": list(self.hparams.split_ratios)}

    def _dataset(
        self, split: str | None, root: str | None = None, traces: str | None = None
    ) -> HallucinationGraphDataset:
        """A split of the training store, or (``split=None``) every trace of a store to score,
        those without gold answers included."""
        return HallucinationGraphDataset(
            root or self.hparams.root,
            traces=traces or self.hparams.traces,
            spec=self.spec,
            split=split,
            split_seed=self.hparams.split_seed,
            split_ratios=tuple(self.hparams.split_ratios),
            split_by=self.hparams.split_by,
            train_size=self.hparams.train_size if split == "train" else None,
            keep_unlabelled=split is None,
            # Scoring (split=None) needs no labels, and another store has no judgements.
            labels=self.hparams.labels if split is not None else "index",
        )

    def _predict_location(self) -> tuple[str, str]:
        traces = self.hparams.predict_traces or self.hparams.traces
        if self.hparams.predict_root:
            return self.hparams.predict_root, traces
        if not self.hparams.predict_traces:
            return self.hparams.root, traces
        resolved = str(Path(traces).resolve())
        tag = hashlib.sha256(resolved.encode()).hexdigest()[:8]
        return str(Path(self.hparams.root) / "predict" / f"{Path(resolved).name}-{tag}"), traces

    def prepare_data(self) -> None:
        """Build the graph cache and the split file once, before any rank reads them."""
        if self.trainer is not None and self.trainer.state.fn == TrainerFn.PREDICTING:
            self._dataset(None, *self._predict_location())
            return
        for split in SPLITS:
            self._dataset(split)

    def setup(self, stage: str) -> None:
        if stage == "predict":
            root, traces = self._predict_location()
            self.datasets["predict"] = self._dataset(None, root, traces)
            if len(self.datasets["predict"]) == 0:
                raise UserError(f"{traces} has no traces with answer tokens to score")
            return
        for split in SPLITS:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)
                log.info("%s split: %d graphs", split, len(self.datasets[split]))
        width = self.datasets["train"].num_node_features
        if width != self.num_node_features:
            raise UserError(
                f"graphs have {width} node features but the options and the store give "
                f"{self.num_node_features}; the graph dataset and the store disagree"
            )
        if stage == "fit":
            labels = self.datasets["train"].labels
            positives = sum(labels)
            negatives = len(labels) - positives
            if positives == 0 or negatives == 0:
                raise UserError(
                    f"the training split has a single class ({positives} hallucinated, "
                    f"{negatives} correct); a detector needs both: use more traces"
                )
            self.pos_weight = negatives / positives

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def fingerprint(self, split: str = "test") -> dict:
        """What a result was computed on. ``split_sha256`` hashes the question ids and labels of
        ``split`` (two detectors with equal values were scored on the same questions);
        ``sha256`` adds the graph options (the very same graphs). ``labels`` says where the
        labels came from (:meth:`extraction.judgements.LabelSource.describe`)."""
        dataset = self.datasets[split]
        items = sorted(zip(dataset.question_ids, dataset.labels, strict=True))
        return {
            # The spec under its key names from before issue 22: the same graphs, the same hash.
            "sha256": _sha256(
                {
                    "split": split,
                    "items": items,
                    "graph_options": self._options(self.spec.cache_key()),
                }
            ),
            "split_sha256": _sha256({"split": split, "items": items}),
            "split": split,
            "n": len(items),
            "n_hallucinated": sum(label for _, label in items),
            "traces": str(Path(self.hparams.traces).resolve()),
            "model": self.store.manifest.settings.model,
            "labels": dataset.label_source.describe(),
            "generations": describe_generations(self.store),
            "graph_options": self.graph_options,
        }


def describe_generations(store: TraceStore) -> str | None:
    """How a store with several generations per question is trained and scored, for reports
    (None when every question has one answer)."""
    sizes = [len(traces) for traces in store.units.values()]
    if max(sizes, default=1) <= 1:
        return None
    per_question = str(max(sizes)) if min(sizes) == max(sizes) else f"{min(sizes)}–{max(sizes)}"
    return (
        f"{per_question} generations per question ({len(sizes)} questions, {sum(sizes)} "
        "traces), every generation of a question in one split: every detector is scored on "
        "generation 0 of the test questions (val: generation 0 of the val questions); "
        "trace-level detectors (probes, token confidence, graph detectors) train on every "
        "generation of the train questions, sampling detectors score each question from all of "
        "its generations"
    )


def _sha256(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
