"""Reading one layer of one trace from a trace store (lazily) or from an in-memory ``Trace``.

Layer ``l`` is always block ``l``'s attention with that block's output hidden state
(``resid_post``) as node features: the project's one index convention (``extraction.trace``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch_geometric.data import Data

from extraction import UserError
from extraction.store import Trace, TraceStore
from graphs.build import trace_to_graph

Source = TraceStore | Trace | str | Path


@dataclass
class LayerInputs:
    """What a graph of one layer is built from (tensors as stored: half precision)."""

    question_id: str
    attention: Tensor
    hidden: Tensor
    n_prompt_tokens: int
    tokens_decoded: list[str]
    label: int | None
    question: str
    answer: str


def open_source(source: Source) -> TraceStore | Trace:
    """A store directory path becomes a :class:`TraceStore`; stores and traces pass through."""
    return TraceStore(source) if isinstance(source, str | Path) else source


def check_layers(source: TraceStore | Trace, layers: list[int]) -> None:
    available = source.stored_blocks
    contiguous = bool(available) and available == list(range(available[0], available[-1] + 1))
    stored = f"{available[0]}..{available[-1]}" if contiguous else str(available)
    for layer in layers:
        if layer not in available:
            raise UserError(f"layer {layer} is not stored; choose a block in {stored}")


def resolve_layers(source: TraceStore | Trace, layers: str | Sequence[int | str]) -> list[int]:
    """``"all"`` (or ``["all"]``, as a flag gives it) is every stored block in order; a list of
    blocks is checked against the store."""
    if isinstance(layers, str):
        layers = [layers]
    if list(layers) == ["all"]:
        return source.stored_blocks
    try:
        blocks = [int(layer) for layer in layers]
    except ValueError:
        raise UserError(f"layers must be block numbers or all, got {list(layers)}") from None
    check_layers(source, blocks)
    return blocks


def read_layer(source: TraceStore | Trace, question_id: str | None, layer: int) -> LayerInputs:
    """Block ``layer``'s attention and output hidden state of one trace (``question_id`` may be
    None for a ``Trace``)."""
    check_layers(source, [layer])
    if isinstance(source, Trace):
        if question_id not in (None, source.question_id):
            raise UserError(f"this trace is {source.question_id!r}, not {question_id!r}")
        return LayerInputs(
            question_id=source.question_id,
            attention=source.attention(layer),
            hidden=source.resid_post(layer),
            n_prompt_tokens=source.n_prompt_tokens,
            tokens_decoded=source.tokens_decoded,
            label=source.label,
            question=source.question,
            answer=source.generated_answer_clean,
        )
    if question_id not in source:
        raise UserError(f"no trace for question {question_id!r} in {source.root}")
    row, record = source.row(question_id), source.record(question_id)
    return LayerInputs(
        question_id=question_id,
        attention=source.attention(question_id, layer),
        hidden=source.resid_post(question_id, layer),
        n_prompt_tokens=record.n_prompt_tokens,
        tokens_decoded=list(record.tokens_decoded),
        label=row.label,
        question=row.question,
        answer=row.generated_answer_clean,
    )


def layer_graph(
    source: Source, question_id: str | None, layer: int, **options
) -> tuple[LayerInputs, Data]:
    """One trace's layer and its graph (``options`` as in :func:`graphs.build.trace_to_graph`)."""
    inputs = read_layer(open_source(source), question_id, layer)
    graph = trace_to_graph(inputs.attention, inputs.hidden, inputs.n_prompt_tokens, **options)
    return inputs, graph
