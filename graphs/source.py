"""Reading one layer of one trace from a trace store (lazily) or from an in-memory ``Trace``.

Layer ``l`` is always block ``l``'s attention with that block's output hidden state
(``resid_post``) as node features: the project's one index convention (``extraction.store.trace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch_geometric.data import Data

from common import UserError
from extraction.store import Trace, TraceStore
from graphs.build import trace_to_graph
from graphs.spec import GraphSpec, check_blocks

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


def read_layer(source: TraceStore | Trace, question_id: str | None, layer: int) -> LayerInputs:
    """Block ``layer``'s attention and output hidden state of one trace (``question_id`` may be
    None for a ``Trace``)."""
    check_blocks([layer], source.stored_blocks)
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
    source: Source, question_id: str | None, spec: GraphSpec
) -> tuple[LayerInputs, Data]:
    """One trace's block ``spec.block`` and its graph by ``spec``'s rules."""
    if spec.block is None:
        raise UserError(
            f"one block's graph needs block set in the graph spec, got blocks {spec.blocks}"
        )
    source = open_source(source)
    if isinstance(source, TraceStore):
        spec.check_exact(source.min_attention)
    inputs = read_layer(source, question_id, spec.block)
    graph = trace_to_graph(inputs.attention, inputs.hidden, inputs.n_prompt_tokens, spec)
    return inputs, graph
