"""Sampling-based detectors: a question's K answers (generation 0, the beam-search answer, and
K − 1 samples) scored by how much they disagree, from the consistency data the extraction run
stored (:meth:`extraction.store.TraceStore.consistency`), never by running a model again.

- EigenScore (INSIDE, Chen et al., ICLR 2024; HaloScope's anchor): the mean log10 eigenvalue
  of the ``[K, K]`` covariance of the answers' sentence embeddings, each answer's middle-block
  hidden state at its last token (``eigen_hidden``), plus ``1e-3·I``, exactly as the authors'
  code (``getEigenIndicator_v0``: ``torch.cov``, ``mean(log10(svd(C + αI)))``). Disagreeing
  answers spread out, so the score grows.
- Semantic entropy (Kuhn et al., ICLR 2023; the discrete variant of Farquhar et al., 2024):
  answers clustered by meaning, entropy of the cluster frequencies. The meaning test is the
  cosine similarity of the stored all-MiniLM-L6-v2 embeddings, not an NLI model.
- Lexical similarity (Lin et al., 2023, as INSIDE reports it): mean ROUGE-L F over every pair
  of answers, from the stored ``[K, K]`` matrix; it measures agreement, so it is negated.

A question's score is given to every one of its traces; the benchmark scores generation 0. A
store with one generation per question has nothing to compare: :func:`skip_reason` says so,
and the benchmark lists these detectors as skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from extraction.store import Consistency, Decoding
from training.detectors.scores import RIDGE, mean_log_eigenvalue

# Cosine similarity of MiniLM embeddings above which two answers count as the same meaning.
SAME_MEANING = 0.8
NAMES = ("eigenscore", "semantic_entropy", "lexical_similarity")


def eigenscore(embeddings: torch.Tensor, alpha: float = RIDGE) -> float:
    """EigenScore of ``[K, d]`` sentence embeddings: ``mean(log10 eig(cov + alpha·I))`` with
    ``cov`` the ``[K, K]`` covariance of the K embeddings over their d features (``torch.cov``,
    divided by ``d - 1``)."""
    return mean_log_eigenvalue(embeddings, alpha, ddof=1) / math.log(10)


def semantic_clusters(embeddings: torch.Tensor, threshold: float = SAME_MEANING) -> list[int]:
    """Cluster id of each of ``[K, d]`` answer embeddings: an answer joins the first cluster
    whose first answer it matches (cosine similarity ``>= threshold``), else opens a new one."""
    unit = torch.nn.functional.normalize(embeddings.double(), dim=-1)
    similarity = unit @ unit.T
    representatives: list[int] = []  # each cluster's first answer
    ids = []
    for answer, row in enumerate(similarity):
        same = [c for c, first in enumerate(representatives) if row[first] >= threshold]
        if not same:
            representatives.append(answer)
        ids.append(same[0] if same else len(representatives) - 1)
    return ids


def semantic_entropy(embeddings: torch.Tensor, threshold: float = SAME_MEANING) -> float:
    """Entropy (nats) of the meaning clusters' frequencies: 0 when all answers agree, ``log K``
    when all differ."""
    counts = torch.bincount(torch.tensor(semantic_clusters(embeddings, threshold))).double()
    p = counts / counts.sum()
    return float(-(p * p.log()).sum())


def lexical_similarity(similarity: torch.Tensor) -> float:
    """Mean of the ``[K, K]`` pairwise similarity matrix over the pairs ``i < j`` (1 for a
    single answer: it agrees with itself)."""
    pairs = torch.triu_indices(len(similarity), len(similarity), offset=1)
    if pairs.shape[1] == 0:
        return 1.0
    return float(similarity.double()[pairs[0], pairs[1]].mean())


def sampling_scores(consistency: Consistency) -> list[float]:
    """``[eigenscore, semantic entropy, -lexical similarity]`` of one question's answers, each
    oriented so that higher means more likely hallucinated."""
    return [
        eigenscore(consistency.eigen_hidden),
        semantic_entropy(consistency.answer_embeddings),
        -lexical_similarity(consistency.lexical_similarity),
    ]


def skip_reason(units: Mapping[str, Sequence[str]], decoding: Decoding) -> str | None:
    """Why the sampling detectors cannot run on a store whose questions have these traces (None
    when some question has two or more)."""
    most = max((len(traces) for traces in units.values()), default=0)
    if most >= 2:
        return None
    return (
        f"single-generation store: one answer per question (num_generations="
        f"{decoding.generations}, num_beams={decoding.num_beams}, do_sample={decoding.do_sample})"
        "; extract with --num_generations K (K >= 2) to compare several answers per question"
    )
