"""Published hallucination detectors, each a small function from stored tensors to a score or a
feature vector, and the fitting that turns features into test scores (for the benchmark).

- :mod:`.scores`: the per-trace, per-layer quantities (LLM-Check, Lookback Lens, LapEigvals,
  HalluShift, sequence uncertainty, answer states).
- :mod:`.sampling`: EigenScore, semantic entropy and lexical similarity over several answers.
- :mod:`.features`: every quantity of every trace of a store, read one layer at a time, cached.
- :mod:`.fitting` and :mod:`.registry`: how each detector turns its features into test scores.
"""
