"""Stage 1: final-state traces of a causal LM answering questions (``python -m extraction``).

Kept import-light: ``graphs`` and ``training`` read stores through ``extraction.store`` and must
not pull in ``transformers``. What they use besides the store is exported here: a store's labels
(:func:`label_source`) and the answer similarities the sampling detectors share with labelling.
"""

from extraction.judgements import LabelSource, label_source
from extraction.labels import embedding_similarities, rougeL_similarities, sentence_embeddings

__all__ = [
    "LabelSource",
    "embedding_similarities",
    "label_source",
    "rougeL_similarities",
    "sentence_embeddings",
]
