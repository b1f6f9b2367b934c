"""``HallucinationGraphDataset``: every trace of a store as a token graph of one or more layers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data, Dataset

from common import UserError, atomic_open, atomic_write_text, read_json, shown_path
from extraction.store import IndexRow, TraceStore, label_source
from graphs.build import stack_layers, traces_to_graphs
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

# Bump when the content of a processed graph changes, so old caches are never served.
# 2: the head mean is numpy's sequential float32 mean in every case (torch's blocked sum differed
# from it in the last bit on some shapes). The cache key is the resolved GraphSpec since issue 8:
# caches built before it are not found again and are rebuilt.
GRAPH_FORMAT = 2
RECORD = "graphs.json"
# ``y`` of a trace kept with ``keep_unlabelled`` (no gold answer): scored by ``predict``, never
# in a split.
UNLABELLED = -1
# Traces whose graphs are built together (graphs.build.traces_to_graphs): at most this many, and
# at most this many attention and hidden-state elements, over the chosen layers, at once.
CHUNK_TRACES = 64
CHUNK_ELEMENTS = 2**24


def _stable_repr(obj: object) -> str:
    """``repr`` without memory addresses, so a pre_transform keys the cache the same each run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


class HallucinationGraphDataset(Dataset):
    r"""Graphs of the final-state traces in a trace store: one graph per answered question,
    labelled ``y = 1`` when the answer is hallucinated and ``0`` when it is correct.

    Layer ``l`` is block ``l``'s attention with the output of that block (hidden state
    ``l + 1``) as node features. Nodes are tokens (prompt and answer, or only the answer):
    ``x [N, hidden]`` float32, ``is_answer`` bool ``[N]``, ``position`` float ``[N]`` (token
    index / (T - 1) in the full sequence). An edge ``j → i`` (``edge_index[:, e] = (j, i)``) carries
    how much token ``i`` attends to token ``j``: head mean or max in ``edge_weight [E]``, or every
    head in ``edge_attr [E, heads]``. Each graph also has ``y`` (long ``[1]``), ``question_id``
    and ``layer``; with ``spec.topology``, ``topo`` float ``[1, F]`` (see
    :data:`graphs.topology.FEATURES`).

    With ``GraphSpec(layers=[l1, ..., lL])`` (or ``"all"``) and ``combine="union"``, a trace is
    one token graph over the attention of every chosen ``(layer, head)`` pair: the heads of the
    L blocks are laid side by side as ``L * H`` heads (column ``k = layer position * H + h``),
    so ``head_mode="any"`` keeps ``j → i`` when any pair has ``attn[h, i, j] >= threshold`` and
    stores all ``L * H`` values in ``edge_attr`` (half precision), and
    ``node_features="attention_diagonal"`` gives each token its ``L * H`` self-attention
    values (CHARM, Frasca et al., ICLR 2026). Hidden-state node features then come from one
    block, ``hidden_layer``. Such a graph has ``layers`` (no ``layer``, no ``node_layer``).

    With ``layers=[l1, ..., lL]`` and ``combine="stack"`` a trace is one graph: the disjoint
    union of its L per-layer graphs, with ``node_layer`` long ``[N_total]`` (index into
    ``layers``), ``num_graph_layers`` = L and ``layers`` instead of ``layer`` (``topo`` is then
    ``[1, L, F]``). After batching,
    ``global_mean_pool(h, batch.batch * L + batch.node_layer)`` gives ``[B * L, d]``, which
    ``.view(B, L, d)`` turns into the per-layer sequence a sequence model reads.

    Traces without a label (questions with no gold answer) are skipped and counted in the log
    unless ``keep_unlabelled`` (then ``y = -1``, and they belong to no split: for ``predict``),
    as are answer-only graphs of traces with no answer tokens. Graphs are built once, in chunks
    of traces (at most 64, and a bounded number of tensor elements) read lazily from the store,
    one file per graph under ``root/processed/<name>-<hash>``, where the hash covers the resolved
    graph spec (``spec.resolve``), the store and its labels: a new threshold builds a new cache,
    never a stale one.
    ``split`` selects ``train``, ``val`` or ``test`` from ``root/splits.json`` (by question id,
    stratified by label, seeded; the same for every dataset built from the same store and root,
    whatever its graph options). In a store with several generations per question there is a
    graph per trace; a question's traces share a split, ``train`` holds all of them and ``val``
    and ``test`` only generation 0 (see :mod:`graphs.splits`). Like PyG, a ``pre_transform``
    or ``pre_filter`` is known by its ``repr``: two lambdas look alike, so give named
    functions (or ``force_reload=True``).

    Args:
        root: Folder for processed graphs and ``splits.json``.
        traces: A trace store directory (``python -m extraction`` output).
        spec: Which graphs (:class:`graphs.GraphSpec`: the block or blocks, the tokens, the
            edge rule, the node features, topology); it must name ``layer`` or ``layers``.
        keep_unlabelled: Keep traces without a label (``y = -1``), for ``predict``.
        labels: Where the labels come from: None or ``index`` (the store's index), ``judged``
            (the packaged judgements of the store's model and dataset) or a judgement file
            (see :func:`extraction.judgements.label_source`). ``label_source`` tells which.
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

    **STATISTICS** (SmolLM2-135M-Instruct on the first 200 TriviaQA rows of
    ``../shared/data``, seed decoding, labels as first extracted; 30 blocks, 9 heads, hidden size
    576; ``layer=15``, defaults otherwise; the command is in ``docs/BENCHMARKS.md``):

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

        self.record = read_json(self.processed_paths[0])
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
            "format": GRAPH_FORMAT,
            "traces": self.traces,
            "created": store.manifest.created,
            "labels": list(self.candidates.items()),
            "graph": self.spec.as_dict(),
            "pre_transform": _stable_repr(pre_transform),
            "pre_filter": _stable_repr(pre_filter),
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        blocks = self.spec.blocks
        if self.spec.multi_layer:
            layers = (
                ("union" if self.spec.combine == "union" else "layers")
                + "-".join(map(str, blocks[:4]))
                + "-etc" * (len(blocks) > 4)
            )
        else:
            layers = f"layer{blocks[0]}"
        return f"{layers}-{self.spec.nodes}-{digest[:12]}"

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
    def layers(self) -> list[int]:
        """The blocks of each graph, in order."""
        return self.spec.blocks

    @property
    def num_graph_layers(self) -> int:
        return len(self.layers)

    @property
    def question_ids(self) -> list[str]:
        return [entry["question_id"] for entry in self.entries]

    @property
    def labels(self) -> list[int]:
        return [entry["label"] for entry in self.entries]

    def _chunks(self, store: TraceStore) -> Iterator[list[str]]:
        """The labelled question ids in order, in chunks that bound the memory of a build."""
        heads, hidden = store.manifest.model.num_heads, store.manifest.model.hidden_size
        chunk, size = [], 0
        for question_id in self.candidates:
            seq_len = store.row(question_id).seq_len
            elements = len(self.layers) * (heads * seq_len**2 + hidden * seq_len)
            if chunk and (len(chunk) == CHUNK_TRACES or size + elements > CHUNK_ELEMENTS):
                yield chunk
                chunk, size = [], 0
            chunk.append(question_id)
            size += elements
        if chunk:
            yield chunk

    def _union_graphs(
        self, store: TraceStore, question_ids: list[str], rows: list[IndexRow]
    ) -> list[Data]:
        """One token graph per trace over the heads of every chosen layer, side by side."""
        hiddens = [None] * len(question_ids)
        if self.spec.hidden_layer is not None:
            hiddens = [store.resid_post(qid, self.spec.hidden_layer) for qid in question_ids]
        return traces_to_graphs(
            [
                torch.cat([store.attention(qid, layer) for layer in self.layers])
                for qid in question_ids
            ],
            hiddens,
            [row.n_prompt_tokens for row in rows],
            self.spec,
        )

    def _layer_graphs(
        self, store: TraceStore, question_ids: list[str], rows: list[IndexRow]
    ) -> list[list[Data]]:
        """Each chosen layer's graphs of the traces."""
        return [
            traces_to_graphs(
                [store.attention(question_id, layer) for question_id in question_ids],
                [store.resid_post(question_id, layer) for question_id in question_ids],
                [row.n_prompt_tokens for row in rows],
                self.spec,
            )
            for layer in self.layers
        ]

    def _build(self, store: TraceStore, question_ids: list[str]) -> list[Data | None]:
        """The graphs of some traces, None for one without nodes (answer-only, empty answer)."""
        rows = [store.row(question_id) for question_id in question_ids]
        union = self.spec.combine == "union"
        if union:
            per_layer = [self._union_graphs(store, question_ids, rows)]
        else:
            per_layer = self._layer_graphs(store, question_ids, rows)
        built = []
        by_trace = zip(*per_layer, strict=True)  # each trace's graph of each layer
        for question_id, graphs in zip(question_ids, by_trace, strict=True):
            if any(graph.num_nodes == 0 for graph in graphs):
                built.append(None)
                continue
            if self.spec.topology:
                for graph in graphs:
                    graph.topo = torch.tensor([list(graph_features(graph).values())])
            if union:
                (data,) = graphs
                data.layers = self.layers
            elif self.spec.multi_layer:
                data = stack_layers(list(graphs))
                data.layers = self.layers
                if self.spec.topology:
                    data.topo = data.topo.unsqueeze(0)  # [L, F] -> [1, L, F]
            else:
                (data,) = graphs
                data.layer = self.layers[0]
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
            for chunk in self._chunks(store)
            for pair in zip(chunk, self._build(store, chunk), strict=True)
        )
        for number, (question_id, data) in enumerate(built):
            if data is None:
                skipped["empty"] += 1
                continue
            per_layer = self._layer_sizes(data)
            if self.pre_filter is not None and not self.pre_filter(data):
                skipped["filtered"] += 1
                continue
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            file = f"{number:06d}.pt"
            with atomic_open(os.path.join(self.processed_dir, file), "wb") as handle:
                torch.save(_own_memory(data.to_dict()), handle)
            entries.append(
                {
                    "question_id": question_id,
                    "file": file,
                    "label": self.candidates[question_id],
                    **per_layer,
                }
            )
        record = {
            "traces": self.traces,
            "layers": self.layers,
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

    def _layer_sizes(self, data: Data) -> dict[str, list[int]]:
        """Nodes and edges of each layer's graph, for ``python -m graphs inspect``."""
        if self.spec.combine == "union" or not self.spec.multi_layer:
            return {"num_nodes": [data.num_nodes], "num_edges": [data.num_edges]}
        n_layers = len(self.layers)
        return {
            "num_nodes": torch.bincount(data.node_layer, minlength=n_layers).tolist(),
            "num_edges": torch.bincount(
                data.node_layer[data.edge_index[1]], minlength=n_layers
            ).tolist(),
        }

    def _process(self) -> None:
        """PyG's ``_process`` without its ``pre_transform.pt``/``pre_filter.pt`` files: it reads
        them back with ``torch.load(weights_only=False)``, which runs whatever code a file from
        someone else holds. The cache name already covers both (see ``_cache_name``)."""
        if not self.force_reload and all(os.path.exists(p) for p in self.processed_paths):
            return
        os.makedirs(self.processed_dir, exist_ok=True)
        self.process()

    def len(self) -> int:
        return len(self.entries)

    def get(self, idx: int) -> Data:
        return Data.from_dict(
            load_graph(os.path.join(self.processed_dir, self.entries[idx]["file"]))
        )


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


def load_graph(path: str) -> dict:
    """A graph file as a dict of tensors and plain values, with ``weights_only=True`` and no
    fallback: a file that needs more (pickled code) is refused, never run."""
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise UserError(
            f"{shown_path(path)} is missing; rebuild with "
            "`python -m graphs build --force_reload true`"
        ) from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a plain graph file, refused without running it ({type(exc).__name__}: "
            f"{reason[:120]}); delete the folder and rebuild if you did not make it"
        ) from None


def _own_memory(mapping: dict) -> dict:
    """Views copied into memory of their own: the batched builder's graphs share tensors with
    the other graphs of their chunk, which ``torch.save`` would write whole into each file."""
    return {
        key: value.clone(memory_format=torch.contiguous_format)
        if torch.is_tensor(value) and value.untyped_storage().nbytes() > value.nbytes
        else value
        for key, value in mapping.items()
    }
