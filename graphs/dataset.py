"""``HallucinationGraphDataset``: every trace of a store as a token graph of one or more blocks."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data, Dataset

from common import UserError, atomic_write_text, temp_pattern
from extraction.store import IndexRow, TraceStore, label_source
from graphs.build import stack_layers, traces_to_graphs
from graphs.cache import RECORD, cache_name, load_graph, read_record, save_graph, trace_chunks
from graphs.spec import GraphSpec
from graphs.splits import (
    NO_GENERATION_0,
    SCORED_GENERATION,
    SPLIT_BY,
    SPLITS,
    SplitBy,
    check_ratios,
    load_or_make_splits,
    nested_subset,
    relation_of,
)
from graphs.topology import FEATURES, graph_features

log = logging.getLogger(__name__)

# ``y`` of a trace kept with ``keep_unlabelled`` (no gold answer): scored by ``predict``, never
# in a split.
UNLABELLED = -1


class HallucinationGraphDataset(Dataset):
    r"""The traces of a store as token graphs: one graph per answered question, ``y = 1`` when
    the answer is hallucinated, ``0`` when it is correct (``-1``: unlabelled, kept only with
    ``keep_unlabelled``, for ``predict``).

    Nodes are tokens, an edge ``j → i`` is token ``i`` attending to token ``j`` in the chosen
    block (``edge_weight`` or ``edge_attr``), node features ``x`` the block's output hidden
    state; see :class:`graphs.GraphSpec` for every option (blocks, tokens, edge rule, node
    features, topology) and ``docs/GRAPHS.md`` for the attributes of each graph kind. Each
    graph also has ``question_id`` and ``block`` (``blocks`` for a multi-block graph).

    Graphs are built once into ``root/processed/<name>-<hash>`` (:mod:`graphs.cache`: a new
    option builds a new cache; each file is checked against its sha256 when loaded). ``split``
    selects ``train``, ``val`` or ``test`` of ``root/splits.json``: by question id, stratified
    by label, seeded, the same for every dataset built from the same store and root
    (:mod:`graphs.splits`). A ``pre_transform`` or ``pre_filter`` is known by its ``repr``:
    give named functions (or ``force_reload=True``).

    Args:
        root: Folder for processed graphs and ``splits.json``.
        traces: A trace store directory (``python -m extraction`` output).
        spec: Which graphs; it must name ``block`` or ``blocks``.
        keep_unlabelled: Keep traces without a label (``y = -1``), for ``predict``.
        labels: None or ``index`` (the store's labels), ``judged`` (the packaged judgements of
            the store's model and dataset) or a judgement file.
        split: ``train``, ``val``, ``test`` or None for every graph.
        split_seed: Seed of the split.
        split_ratios: Train, val and test fractions.
        split_by: ``question`` (stratified by label) or ``relation`` (whole relations of a fact
            store held out: train on some relations, test on others; :func:`graphs.splits.
            make_group_splits`).
        train_size: With ``split="train"``, only the traces of this many train questions, a
            seeded subset nested in every larger one (learning curves;
            :func:`graphs.splits.nested_subset`).
        transform: Applied to each graph on access.
        pre_transform: Applied once, before a graph is saved.
        pre_filter: Graphs for which it returns False are not saved.
        force_reload: Build again even if the cache exists.

    **STATISTICS** (SmolLM2-135M-Instruct, first 200 TriviaQA rows, ``block=15``; the command is
    in ``docs/BENCHMARKS.md``):

    .. list-table::
        :widths: 10 10 10 10 10 10
        :header-rows: 1

        * - #graphs
          - #hallucinated
          - #nodes
          - #edges
          - #features
          - #classes
        * - 200
          - 183
          - ~51.0
          - ~569.5
          - 576
          - 2
    """

    def __init__(
        self,
        root: str | Path,
        traces: str | Path,
        spec: GraphSpec,
        keep_unlabelled: bool = False,
        labels: str | None = None,
        split: str | None = None,
        split_seed: int = 0,
        split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
        split_by: SplitBy = "question",
        train_size: int | None = None,
        transform: Callable[[Data], Data] | None = None,
        pre_transform: Callable[[Data], Data] | None = None,
        pre_filter: Callable[[Data], bool] | None = None,
        force_reload: bool = False,
    ) -> None:
        if not isinstance(spec, GraphSpec):
            raise TypeError(f"spec must be a graphs.GraphSpec, got {type(spec).__name__}")
        if split not in (None, *SPLITS):
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        check_ratios(split_ratios)
        if split_by not in SPLIT_BY:
            raise UserError(f"unknown split_by {split_by!r}; choose one of {', '.join(SPLIT_BY)}")
        store = TraceStore(traces)
        self.spec = spec.resolve(store.stored_blocks, store.min_attention)
        self.traces = str(store.root.resolve())
        self.label_source = label_source(store, labels)
        self.candidates = {
            qid: label
            for qid, label in self.label_source.labels.items()
            if keep_unlabelled or label is not None
        }
        labelled = {qid: label for qid, label in self.candidates.items() if label is not None}
        if not self.candidates:
            raise UserError(
                f"{store.root} has no labelled trace ({len(store)} traces, {len(store.errors)} "
                "errors, none with a label): label them with `python -m extraction label "
                f"{store.root} --method METHOD`, or extract questions with gold answers"
                if store.question_ids
                else f"{store.root} has no traces ({len(store.errors)} errors); nothing to build"
            )
        self.n_unlabelled = len(store) - len(self.candidates)
        self.processed_name = self._cache_name(store, pre_transform, pre_filter)
        super().__init__(
            str(root), transform, pre_transform, pre_filter, log=False, force_reload=force_reload
        )

        self.record = read_record(self.processed_paths[0])
        self.splits = store_splits(self.root, store, labelled, split_seed, split_ratios, split_by)
        entries = self.record["graphs"]
        if split is not None:
            selected = set(self.splits[split])
            if split == "train" and train_size is not None:
                selected = set(train_subset(store, self.splits["train"], labelled, train_size,
                                            split_seed))  # fmt: skip
            if split != "train":
                selected = {q for q in selected if store.rows[q].generation == SCORED_GENERATION}
            entries = [entry for entry in entries if entry["question_id"] in selected]
        self.entries = entries

    def _cache_name(self, store: TraceStore, pre_transform, pre_filter) -> str:
        identity = {
            "traces": self.traces,
            "created": store.manifest.created,
            "labels": list(self.candidates.items()),
            "graph": self.spec.cache_key(),
            "pre_transform": pre_transform,
            "pre_filter": pre_filter,
        }
        spec = self.spec
        return cache_name(identity, spec.chosen_blocks, spec.multi_block, spec.combine, spec.nodes)

    @property
    def raw_file_names(self) -> list[str]:
        return []  # the trace store is the raw data; nothing to download

    @property
    def processed_dir(self) -> str:
        return os.path.join(self.root, "processed", self.processed_name)

    @property
    def processed_file_names(self) -> list[str]:
        # Written last, so its presence means every graph file before it is complete.
        return [RECORD]

    @property
    def blocks(self) -> list[int]:
        """The blocks of each graph, in order."""
        return self.spec.chosen_blocks

    @property
    def question_ids(self) -> list[str]:
        return [entry["question_id"] for entry in self.entries]

    @property
    def labels(self) -> list[int]:
        return [entry["label"] for entry in self.entries]

    def _union_graphs(
        self, store: TraceStore, question_ids: list[str], rows: list[IndexRow]
    ) -> list[Data]:
        """One token graph per trace over the heads of every chosen block, side by side."""
        hiddens = [None] * len(question_ids)
        if self.spec.hidden_block is not None:
            hiddens = [store.resid_post(qid, self.spec.hidden_block) for qid in question_ids]
        return traces_to_graphs(
            [
                torch.cat([store.attention(qid, block) for block in self.blocks])
                for qid in question_ids
            ],
            hiddens,
            [row.n_prompt_tokens for row in rows],
            self.spec,
        )

    def _block_graphs(
        self, store: TraceStore, question_ids: list[str], rows: list[IndexRow]
    ) -> list[list[Data]]:
        """Each chosen block's graphs of the traces."""
        return [
            traces_to_graphs(
                [store.attention(question_id, block) for question_id in question_ids],
                [store.resid_post(question_id, block) for question_id in question_ids],
                [row.n_prompt_tokens for row in rows],
                self.spec,
            )
            for block in self.blocks
        ]

    def _build(self, store: TraceStore, question_ids: list[str]) -> list[Data | None]:
        """The graphs of some traces, None for one without nodes (answer-only, empty answer)."""
        rows = [store.row(question_id) for question_id in question_ids]
        union = self.spec.combine == "union"
        if union:
            per_block = [self._union_graphs(store, question_ids, rows)]
        else:
            per_block = self._block_graphs(store, question_ids, rows)
        built = []
        by_trace = zip(*per_block, strict=True)  # each trace's graph of each block
        for question_id, graphs in zip(question_ids, by_trace, strict=True):
            if any(graph.num_nodes == 0 for graph in graphs):
                built.append(None)
                continue
            if self.spec.topology:
                for graph in graphs:
                    graph.topo = torch.tensor([list(graph_features(graph).values())])
            if union:
                (data,) = graphs
                data.blocks = self.blocks
            elif self.spec.multi_block:
                data = stack_layers(list(graphs))
                data.blocks = self.blocks
                if self.spec.topology:
                    data.topo = data.topo.unsqueeze(0)  # [L, F] -> [1, L, F]
            else:
                (data,) = graphs
                data.block = self.blocks[0]
            label = self.candidates[question_id]
            data.y = torch.tensor([UNLABELLED if label is None else label], dtype=torch.long)
            data.question_id = question_id
            built.append(data)
        return built

    def process(self) -> None:
        store = TraceStore(self.traces)
        entries, skipped = [], Counter(unlabelled=self.n_unlabelled)
        built = (
            pair
            for chunk in trace_chunks(store, list(self.candidates), len(self.blocks))
            for pair in zip(chunk, self._build(store, chunk), strict=True)
        )
        for number, (question_id, data) in enumerate(built):
            if data is None:
                skipped["empty"] += 1
                continue
            sizes = self._block_sizes(data)
            if self.pre_filter is not None and not self.pre_filter(data):
                skipped["filtered"] += 1
                continue
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            file = f"{number:06d}.pt"
            entries.append(
                {
                    "question_id": question_id,
                    "file": file,
                    "sha256": save_graph(os.path.join(self.processed_dir, file), data),
                    "label": self.candidates[question_id],
                    **sizes,
                }
            )
        record = {
            "traces": self.traces,
            "blocks": self.blocks,
            "graph": self.spec.as_dict(),
            "features": list(FEATURES) if self.spec.topology else [],
            "labels": self.label_source.describe(),
            "skipped": dict(skipped),
            "graphs": entries,
        }
        atomic_write_text(Path(self.processed_paths[0]), json.dumps(record, indent=1))
        log.info(
            "built %d graphs in %s (skipped: %d unlabelled, %d without answer tokens, %d by "
            "pre_filter)",
            len(entries),
            self.processed_dir,
            skipped["unlabelled"],
            skipped["empty"],
            skipped["filtered"],
        )

    def _block_sizes(self, data: Data) -> dict[str, list[int]]:
        """Nodes and edges of each block's graph, for ``python -m graphs inspect``."""
        if self.spec.combine == "union" or not self.spec.multi_block:
            return {"num_nodes": [data.num_nodes], "num_edges": [data.num_edges]}
        n_blocks = len(self.blocks)
        return {
            "num_nodes": torch.bincount(data.node_layer, minlength=n_blocks).tolist(),
            "num_edges": torch.bincount(
                data.node_layer[data.edge_index[1]], minlength=n_blocks
            ).tolist(),
        }

    def _process(self) -> None:
        """PyG's ``_process`` without its ``pre_transform.pt``/``pre_filter.pt`` files: it reads
        them back with ``torch.load(weights_only=False)``, which runs whatever code a file from
        someone else holds. The cache name already covers both (see ``_cache_name``)."""
        if not self.force_reload and all(os.path.exists(p) for p in self.processed_paths):
            return
        os.makedirs(self.processed_dir, exist_ok=True)
        for stale in Path(self.processed_dir).glob(temp_pattern("*")):
            stale.unlink()  # left by a build that was killed; this one rewrites every file
        self.process()

    def len(self) -> int:
        return len(self.entries)

    def get(self, idx: int) -> Data:
        entry = self.entries[idx]
        path = os.path.join(self.processed_dir, entry["file"])
        return Data.from_dict(load_graph(path, entry.get("sha256")))


def store_splits(
    root: str | Path,
    store: TraceStore,
    labelled: dict[str, int],
    seed: int,
    ratios: Sequence[float],
    split_by: SplitBy = "question",
) -> dict[str, list[str]]:
    """The train/val/test trace ids of a store's labelled traces (``labelled``: id → label),
    from ``root/splits.json`` (made first if missing); no graph is built."""
    rows = [store.rows[qid] for qid in labelled]
    return load_or_make_splits(
        root,
        list(labelled),
        list(labelled.values()),
        seed,
        ratios,
        units=[row.unit for row in rows],
        generations=[row.generation for row in rows],
        groups=[relation_of(row) for row in rows] if split_by == "relation" else None,
    )


def train_subset(
    store: TraceStore, train: list[str], labelled: dict[str, int], size: int, seed: int
) -> list[str]:
    """The traces of ``size`` train questions (:func:`graphs.splits.nested_subset`, stratified
    by the label of each question's generation 0)."""
    units = [store.rows[qid].unit for qid in train]
    strata = dict.fromkeys(units, NO_GENERATION_0)
    for qid, unit in zip(train, units, strict=True):
        if store.rows[qid].generation == SCORED_GENERATION:
            strata[unit] = labelled[qid]
    return nested_subset(train, units, strata, size, seed)
