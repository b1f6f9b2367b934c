"""``GraphSpec``: every option that decides what a graph is, in one frozen object.

One spec is passed whole to the builders (:func:`graphs.trace_to_graph`), the dataset, the
pictures, the networkx export, ``python -m graphs`` and the training data module; its fields are
the YAML keys of a ``graph:`` section and the ``--graph.*`` / ``--data.graph.*`` flags, and its
resolved form is the graph cache's key. Adding a graph option is one field here (with its check
in :meth:`GraphSpec.__post_init__`) plus the code that uses it (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass
from typing import Literal, get_args

from common import OLD_OPTION_NAMES, UNSET, UserError

HeadMode = Literal["mean", "max", "heads", "any"]
NodeMode = Literal["all", "answer"]
NodeFeatures = Literal["hidden", "attention_diagonal", "both"]
Combine = Literal["stack", "union"]
HEAD_MODES: tuple[str, ...] = get_args(HeadMode)
NODE_MODES: tuple[str, ...] = get_args(NodeMode)
NODE_FEATURES: tuple[str, ...] = get_args(NodeFeatures)
COMBINE_MODES: tuple[str, ...] = get_args(Combine)
# The fields' names before they said block (issue 22): still read from configs, saved
# checkpoints and graph records (flags: common.dialect.OLD_OPTION_NAMES), and still the names a
# graph cache's hash is taken over, so that every cache built before the rename keeps its folder.
OLD_NAMES = {new: old for old, new in OLD_OPTION_NAMES.items()}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphSpec:
    """Which graphs to build from a trace: which blocks, which tokens, which edges, which
    features.

    Args:
        block: One block: its attention, with its output (hidden state ``block + 1``) as node
            features. Set exactly one of block and blocks where a store is read.
        blocks: Several blocks (or ``all`` stored blocks): one graph per trace, made by
            ``combine``.
        combine: ``stack`` (the disjoint union of the per-block graphs, with ``node_layer``) or
            ``union`` (one token graph; the heads of every block side by side as edge features:
            column = block position * heads + head).
        hidden_block: With combine union: the block whose output is the hidden-state node
            feature (null: the middle one of blocks).
        nodes: ``all`` (prompt + answer tokens) or ``answer`` (answer tokens only, renumbered
            from 0).
        threshold: Keep an edge when the head-aggregated attention is >= this (the seed's 0.01).
        top_k: Keep at most this many incoming edges per token (null: all).
        head_mode: ``mean`` (the seed's) or ``max`` over heads, or ``heads`` (one edge feature
            per head; threshold and top-k apply to the mean), or ``any`` (an edge when any head
            passes the threshold and top-k; every head's value, half precision, in edge_attr).
        self_loops: Keep each token's attention to itself.
        prompt_edges: Keep the edges between two prompt tokens (false drops them).
        node_features: ``hidden`` (the block's output), ``attention_diagonal`` (each head's
            attention of a token to itself) or ``both`` (hidden first).
        topology: Attach graph-level topology features as ``topo`` (PageRank, clustering,
            betweenness, answer-to-prompt attention mass; betweenness makes building slower).
        layer: Deprecated name of block: the flag is read as the new one; an old config
            file's key, when given, sets block (``unset``: not given).
        layers: Deprecated name of blocks (as layer).
        hidden_layer: Deprecated name of hidden_block (as layer).
    """

    block: int | None = None
    blocks: tuple[int, ...] | Literal["all"] | None = None
    combine: Combine = "stack"
    hidden_block: int | None = None
    nodes: NodeMode = "all"
    threshold: float = 0.01
    top_k: int | None = None
    head_mode: HeadMode = "mean"
    self_loops: bool = True
    prompt_edges: bool = True
    node_features: NodeFeatures = "hidden"
    topology: bool = False
    layer: InitVar[int | Literal["unset"] | None] = UNSET
    layers: InitVar[tuple[int, ...] | Literal["all", "unset"] | None] = UNSET
    hidden_layer: InitVar[int | Literal["unset"] | None] = UNSET

    def __post_init__(self, layer, layers, hidden_layer) -> None:
        for old, value in (("layer", layer), ("layers", layers), ("hidden_layer", hidden_layer)):
            if value != UNSET:
                log.warning("graph option %s is deprecated; call it %s", old, OLD_OPTION_NAMES[old])
                object.__setattr__(self, OLD_OPTION_NAMES[old], value)
        object.__setattr__(self, "blocks", _normalise_blocks(self.blocks))
        if self.block is not None and self.blocks is not None:
            raise UserError(
                f"set one of block ({self.block}) and blocks ({_shown(self.blocks)}), not both: "
                "set the other to null (--graph.block null, --data.graph.blocks null, ...)"
            )
        if self.blocks == ():
            raise UserError("blocks is empty; give at least one block")
        if not 0 < self.threshold <= 1:
            raise UserError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"top_k must be a positive number of edges per token, got {self.top_k}")
        for name, allowed in (
            ("head_mode", HEAD_MODES),
            ("nodes", NODE_MODES),
            ("node_features", NODE_FEATURES),
            ("combine", COMBINE_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise UserError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )
        for name in ("self_loops", "prompt_edges", "topology"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.hidden_block is not None and (self.combine != "union" or self.blocks is None):
            raise UserError("hidden_block is for blocks with combine: union; drop it or set both")
        if self.topology and self.combine == "union" and self.blocks is not None:
            raise UserError("topology features are per block; use combine: stack with them")

    @property
    def multi_block(self) -> bool:
        """One graph of several blocks (``blocks``), not of one block (``block``)."""
        return self.blocks is not None

    @property
    def chosen_blocks(self) -> list[int]:
        """The blocks of a resolved spec, in order (see :meth:`resolve`)."""
        if self.block is not None:
            return [self.block]
        if not isinstance(self.blocks, tuple):
            raise ValueError("resolve the spec against a store first (blocks is 'all' or unset)")
        return list(self.blocks)

    def resolve(self, available: Sequence[int], min_attention: float | None = None) -> GraphSpec:
        """This spec made concrete for a store that holds the blocks ``available``: ``blocks:
        all`` becomes the list, each block is checked, a union graph's hidden-state block is
        chosen (None when no hidden state is used) and ``combine`` of a single block is
        ``stack``. The resolved spec is what a graph cache is keyed by. ``min_attention`` is a
        sparse store's (``TraceStore.min_attention``): see :meth:`check_exact`."""
        resolved = self._resolve(available)
        resolved.check_exact(min_attention)
        return resolved

    def check_exact(self, min_attention: float | None) -> None:
        """Refuse graphs that a sparse store, which holds only the positions where some head of
        a block reaches ``min_attention`` (None: a dense store, every weight), cannot build
        exactly: a threshold below it, or a head mean over several blocks side by side (combine
        ``union`` with head_mode ``mean``/``heads``/``any``, which read another block's unkept
        weights as 0; ``max`` is exact). Everything else is exact (docs/GRAPHS.md)."""
        if min_attention is None:
            return
        if self.threshold < min_attention:
            raise UserError(
                f"threshold {self.threshold} is below the store's min_attention {min_attention} "
                "(a sparse store keeps no weaker weight); use a threshold >= "
                f"{min_attention} or a store extracted with --attention_format dense"
            )
        several = self.blocks == "all" or (self.blocks is not None and len(self.blocks) > 1)
        if self.combine == "union" and several and self.head_mode != "max":
            raise UserError(
                f"combine union with head_mode {self.head_mode} is not exact on a sparse store "
                f"(min_attention {min_attention}): each block keeps its own positions, so one "
                "block's weights below it read as 0 beside another's; use head_mode max, "
                "combine stack, or a store extracted with --attention_format dense"
            )

    def _resolve(self, available: Sequence[int]) -> GraphSpec:
        if self.block is None and self.blocks is None:
            raise UserError(
                "the graph spec names no block: set block (one block) or blocks (several, or all)"
            )
        blocks = tuple(available) if self.blocks == "all" else self.blocks
        check_blocks([self.block] if self.block is not None else list(blocks), available)
        if self.block is not None:
            return dataclasses.replace(self, combine="stack")
        hidden_block = None
        if self.combine == "union" and self.node_features != "attention_diagonal":
            middle = blocks[len(blocks) // 2]
            hidden_block = middle if self.hidden_block is None else self.hidden_block
            check_blocks([hidden_block], available)
        return dataclasses.replace(self, blocks=blocks, hidden_block=hidden_block)

    def widths(self, hidden_size: int, num_heads: int) -> tuple[int, int | None]:
        """``(x width, edge_attr width or None for edge_weight)`` of this resolved spec's graphs
        from a model with these sizes."""
        pairs = num_heads * (len(self.chosen_blocks) if self.combine == "union" else 1)
        node = {"hidden": hidden_size, "attention_diagonal": pairs, "both": hidden_size + pairs}
        return node[self.node_features], pairs if self.head_mode in ("heads", "any") else None

    def as_dict(self) -> dict:
        """Plain JSON/YAML values (``blocks`` as a list), field by field."""
        values = dataclasses.asdict(self)
        if isinstance(values["blocks"], tuple):
            values["blocks"] = list(values["blocks"])
        return values

    def cache_key(self) -> dict:
        """:meth:`as_dict` under the fields' old names (:data:`OLD_NAMES`): what a graph cache's
        hash covers, unchanged by the rename."""
        return {OLD_NAMES.get(key, key): value for key, value in self.as_dict().items()}

    @classmethod
    def from_dict(cls, values: Mapping) -> GraphSpec:
        """A spec from a ``graph:`` mapping (every key a field or an old name of one; missing
        ones default; keys jsonargparse adds, such as ``__path__``, are left out)."""
        values = {key: value for key, value in values.items() if not key.startswith("__")}
        names = {field.name for field in dataclasses.fields(cls)} | set(OLD_NAMES.values())
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(f"unknown graph option(s) {unknown}; the options: {sorted(names)}")
        return cls(**values)


def new_names(values: Mapping) -> dict:
    """A ``graph:`` mapping with the old field names (``layer``, ...) read as the new ones, as
    :class:`GraphSpec` reads them, for comparing a spec saved before the rename."""
    out = {key: value for key, value in values.items() if key not in OLD_OPTION_NAMES}
    for old, new in OLD_OPTION_NAMES.items():
        if values.get(old, UNSET) != UNSET:
            out[new] = values[old]
    return out


def check_blocks(blocks: Sequence[int], available: Sequence[int]) -> None:
    """Raise :class:`UserError` on a block that the store does not hold."""
    contiguous = bool(available) and list(available) == list(range(available[0], available[-1] + 1))
    stored = f"{available[0]}..{available[-1]}" if contiguous else str(list(available))
    for block in blocks:
        if block not in available:
            raise UserError(f"block {block} is not stored; choose a block in {stored}")


def _normalise_blocks(blocks) -> tuple[int, ...] | str | None:
    """``all`` (or ``["all"]``) stays ``"all"``; a list of blocks (numbers or their strings, as
    a flag gives them) becomes a tuple of ints."""
    if blocks is None:
        return None
    if isinstance(blocks, str):
        blocks = [blocks]
    if list(blocks) == ["all"]:
        return "all"
    try:
        return tuple(int(block) for block in blocks)
    except (TypeError, ValueError):
        raise UserError(f"blocks must be block numbers or all, got {list(blocks)}") from None


def _shown(blocks) -> str:
    return blocks if isinstance(blocks, str) else str(list(blocks))
