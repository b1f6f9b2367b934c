"""Stage 1: final-state traces of a causal LM answering questions (``python -m extraction``).

Kept import-light: ``graphs`` and ``training`` read stores through ``extraction.store`` and must
not pull in ``transformers``.
"""
