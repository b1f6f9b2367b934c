"""Stage 1: final-state traces of a causal LM answering questions (``python -m extraction``).

Imports nothing: ``import extraction.store`` (the store contract every later stage reads) must
not pull in the model, the labellers or ``transformers``. The utilities every stage shares live
in :mod:`common`; the floors are drawn in docs/ARCHITECTURE.md.
"""
