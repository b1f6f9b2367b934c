"""Sampling-based detectors: several answers to one question, scored by how much they disagree.

- EigenScore (INSIDE; HaloScope's anchor): mean log-eigenvalue of the answers' sentence-embedding
  covariance. Disagreeing answers spread out, so the score grows.
- Semantic entropy (Kuhn et al.): answers clustered by meaning, entropy of the cluster sizes.
  The meaning test here is the packaged all-MiniLM-L6-v2 cosine similarity, not an NLI model.
- Lexical similarity: mean pairwise ROUGE-L F of the answers (agreement, so it is negated).

The answers are a trace record's ``sampled_answers``. A store written with one beam-search
answer per question has nothing to compare:
:func:`skip_reason` says so, and the benchmark lists these detectors as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations

import torch

from extraction import embedding_similarities, rougeL_similarities, sentence_embeddings
from extraction.store import Decoding, TraceRecord
from training.detectors.scores import mean_log_eigenvalue

# Cosine similarity of MiniLM embeddings above which two answers count as the same meaning.
SAME_MEANING = 0.8

Similarity = Callable[[str, list[str]], list[float]]


def eigenscore(embeddings: torch.Tensor) -> float:
    """EigenScore of ``[K, d]`` answer embeddings (K >= 2)."""
    return mean_log_eigenvalue(embeddings)


def semantic_clusters(
    answers: Sequence[str], similarity: Similarity = embedding_similarities
) -> list[int]:
    """Cluster id of each answer: it joins the first cluster whose first answer it matches
    (``similarity >= SAME_MEANING``), else opens a new one."""
    representatives: list[str] = []
    ids = []
    for answer in answers:
        scores = similarity(answer, representatives) if representatives else []
        match = next((c for c, score in enumerate(scores) if score >= SAME_MEANING), None)
        if match is None:
            representatives.append(answer)
            match = len(representatives) - 1
        ids.append(match)
    return ids


def semantic_entropy(
    answers: Sequence[str], similarity: Similarity = embedding_similarities
) -> float:
    """Entropy (nats) of the meaning clusters' frequencies: 0 when all answers agree, ``log K``
    when all differ."""
    ids = semantic_clusters(answers, similarity)
    counts = torch.bincount(torch.tensor(ids)).double()
    p = counts / counts.sum()
    return float(-(p * p.log()).sum())


def lexical_similarity(answers: Sequence[str]) -> float:
    """Mean ROUGE-L F over every pair of answers (1 when all are the same words)."""
    pairs = list(combinations(answers, 2))
    return sum(rougeL_similarities(a, [b])[0] for a, b in pairs) / len(pairs)


def sampling_scores(answers: Sequence[str]) -> list[float]:
    """``[eigenscore, semantic entropy, -lexical similarity]`` of one question's answers (MiniLM
    embeddings), each oriented so that higher means more likely hallucinated."""
    return [
        eigenscore(sentence_embeddings(list(answers))),
        semantic_entropy(answers),
        -lexical_similarity(answers),
    ]


def skip_reason(records: Sequence[TraceRecord], decoding: Decoding) -> str | None:
    """Why the sampling detectors cannot run on a store (None when every record holds two or
    more sampled answers)."""
    counts = [len(record.sampled_answers) for record in records]
    if counts and min(counts) >= 2:
        return None
    return (
        f"single-generation store: one answer per question (num_beams="
        f"{decoding.num_beams}, do_sample={decoding.do_sample}); needs >= 2 "
        f"sampled answers per question, found at most {max(counts, default=0)}"
    )
