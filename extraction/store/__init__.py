"""The trace store: a directory per run with a manifest, an index and safetensors shards.

``TraceStore`` is the public reader every later stage uses; ``TraceWriter`` is used by the
extraction run only.
"""

from extraction.store.reader import TraceStore
from extraction.store.writer import TraceWriter

__all__ = ["TraceStore", "TraceWriter"]
