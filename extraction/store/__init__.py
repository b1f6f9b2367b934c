"""The trace store: a directory per run with a manifest, an index and safetensors shards.

``TraceStore`` is the public reader every later stage uses (it yields :class:`Trace` records);
``TraceWriter`` is used by the extraction run only (``extraction.synthetic`` writes small random
stores through it for tests and benchmarks); :func:`label_source` reads a store's labels, stored
or judged. What a store holds is typed
(:mod:`extraction.store.contract`): the :class:`Manifest`, an :class:`IndexRow` per question, a
:class:`TraceRecord` per trace and its :class:`AnswerStats`; a store of several generations per
question also a :class:`Consistency` per question.
"""

from extraction.store.contract import (
    AnswerStats,
    Consistency,
    Decoding,
    IndexRow,
    Label,
    Manifest,
    ModelInfo,
    Requested,
    RunSettings,
    TraceRecord,
    trace_id,
)
from extraction.store.judgements import LabelSource, label_source
from extraction.store.reader import TraceStore
from extraction.store.trace import Trace
from extraction.store.writer import TraceWriter

__all__ = [
    "AnswerStats",
    "Consistency",
    "Decoding",
    "IndexRow",
    "Label",
    "LabelSource",
    "Manifest",
    "ModelInfo",
    "Requested",
    "RunSettings",
    "Trace",
    "TraceRecord",
    "TraceStore",
    "TraceWriter",
    "label_source",
    "trace_id",
]
