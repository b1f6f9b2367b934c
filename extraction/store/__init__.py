"""The trace store: a directory per run with a manifest, an index and safetensors shards.

``TraceStore`` is the public reader every later stage uses (it yields :class:`Trace` records);
``TraceWriter`` is used by the extraction run only, ``rewrite_labels`` by ``label``;
``write_synthetic_store`` writes a small random store through it (tests, benchmarks).
What a store holds is typed (:mod:`extraction.store.contract`): the :class:`Manifest`, an
:class:`IndexRow` per question, a :class:`TraceRecord` per trace and its :class:`AnswerStats`;
a store of several generations per question also a :class:`Consistency` per question.
"""

from extraction.store.contract import (
    AnswerStats,
    Consistency,
    Decoding,
    IndexRow,
    Manifest,
    ModelInfo,
    Requested,
    RunSettings,
    TraceRecord,
    trace_id,
)
from extraction.store.integrity import file_sha256
from extraction.store.reader import TraceStore
from extraction.store.synthetic import SyntheticShape, synthetic_trace, write_synthetic_store
from extraction.store.writer import TraceWriter, rewrite_labels
from extraction.trace import Trace

__all__ = [
    "AnswerStats",
    "Consistency",
    "Decoding",
    "IndexRow",
    "Manifest",
    "ModelInfo",
    "Requested",
    "RunSettings",
    "SyntheticShape",
    "Trace",
    "TraceRecord",
    "TraceStore",
    "TraceWriter",
    "file_sha256",
    "rewrite_labels",
    "synthetic_trace",
    "trace_id",
    "write_synthetic_store",
]
