"""The trace store: a directory per run with a manifest, an index and safetensors shards.

``TraceStore`` is the public reader every later stage uses; ``TraceWriter`` is used by the
extraction run only; ``write_synthetic_store`` writes a small random store through it (tests,
benchmarks).
"""

from extraction.store.reader import TraceStore
from extraction.store.synthetic import SyntheticShape, synthetic_trace, write_synthetic_store
from extraction.store.writer import TraceWriter

__all__ = [
    "SyntheticShape",
    "TraceStore",
    "TraceWriter",
    "synthetic_trace",
    "write_synthetic_store",
]
