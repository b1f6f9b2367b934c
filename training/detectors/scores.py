"""Per-trace detector quantities, computed from one layer's stored tensors at a time.

Conventions: ``attention`` is one block's ``[heads, T, T]`` (row ``i`` = what token ``i`` attends
to), ``hidden`` a ``[T, d]`` hidden state, positions ``0 .. n_prompt - 1`` the prompt. The answer
span is ``n_prompt .. T - 1``; an empty answer (the model stopped at once) is represented by the
last prompt token, the position whose prediction was end-of-sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Attention weights are stored in half precision: an exact 0 would make log() infinite.
LOG_FLOOR = 1e-8
# Ridge of LLM-Check's and EigenScore's covariance log-determinant (their papers use 1e-3).
RIDGE = 1e-3
# An empty answer has no token probabilities: rank it as least confident (the existing baselines').
LEAST_CONFIDENT = (-1e3, 1e3)


def answer_positions(seq_len: int, n_prompt: int) -> Tensor:
    """Indices of the answer tokens (the last prompt token when the answer is empty)."""
    return torch.arange(min(n_prompt, seq_len - 1), seq_len)


def sequence_uncertainty(logprobs: Tensor, entropy: Tensor) -> Tensor:
    """``[mean log-prob, min log-prob, mean entropy, max entropy]`` of the answer tokens."""
    if logprobs.numel() == 0:
        low, high = LEAST_CONFIDENT
        return torch.tensor([low, low, high, high])
    logprobs, entropy = logprobs.float(), entropy.float()
    return torch.stack([logprobs.mean(), logprobs.min(), entropy.mean(), entropy.max()])


def token_probability_features(logprobs: Tensor) -> Tensor:
    """HalluShift's token-probability block: ``[mean, min, max, std]`` of the chosen tokens'
    probabilities (zeros for an empty answer)."""
    if logprobs.numel() == 0:
        return torch.zeros(4)
    probs = logprobs.float().exp()
    std = probs.std() if probs.numel() > 1 else probs.new_zeros(())
    return torch.stack([probs.mean(), probs.min(), probs.max(), std])


def llmcheck_attention_score(attention: Tensor, answer: Tensor) -> float:
    """LLM-Check's attention score: per head, the log-determinant of the answer's
    lower-triangular attention block (the sum of the log diagonal) over its length, summed over
    heads. An answer whose tokens only attend to themselves scores 0."""
    diagonal = attention[:, answer, answer].float()
    return float(diagonal.clamp_min(LOG_FLOOR).log().mean(-1).sum())


def mean_log_eigenvalue(vectors: Tensor, ridge: float = RIDGE, ddof: int = 0) -> float:
    """``(1/m) log det(Σ + ridge·I)`` with ``Σ = Z J Zᵀ / (d - ddof)`` the ``[m, m]`` covariance
    of ``m`` vectors ``Z [m, d]``, each centred over its ``d`` features (``J``): LLM-Check's
    hidden score on answer-token states, and EigenScore on the embeddings of several answers."""
    z = vectors.double()
    z = z - z.mean(-1, keepdim=True)
    sigma = z @ z.T / max(z.shape[-1] - ddof, 1)
    eigenvalues = torch.linalg.eigvalsh(sigma + ridge * torch.eye(len(z), dtype=z.dtype))
    return float(eigenvalues.clamp_min(ridge).log().mean())


def llmcheck_hidden_score(hidden: Tensor, answer: Tensor) -> float:
    """LLM-Check's hidden score: the mean log-eigenvalue of the answer tokens' covariance."""
    return mean_log_eigenvalue(hidden[answer])


def lookback_ratio(attention: Tensor, n_prompt: int, answer: Tensor) -> Tensor:
    """Lookback Lens, ``[heads]``: per answer token, the attention mass on prompt tokens over the
    mass on prompt + answer tokens, averaged over the answer. An answer that attends only to the
    prompt has ratio 1."""
    rows = attention[:, answer, :].float()
    context = rows[..., :n_prompt].sum(-1)
    new = rows[..., n_prompt:].sum(-1)
    return (context / (context + new).clamp_min(LOG_FLOOR)).mean(-1)


def laplacian_eigenvalues(attention: Tensor, k: int) -> Tensor:
    """LapEigvals, ``[heads, k]``: the ``k`` largest eigenvalues of each head's attention-graph
    Laplacian ``L = D - A``, with ``D`` the in-degree of token ``i`` over the ``T - i`` tokens
    that can attend to it. ``A`` is lower triangular, so ``L`` is and its eigenvalues are its
    diagonal ``d_ii - a_ii``; a sequence shorter than ``k`` is padded with zeros."""
    seq_len = attention.shape[-1]
    attention = attention.float()
    attenders = torch.arange(seq_len, 0, -1, dtype=attention.dtype)
    diagonal = attention.sum(-2) / attenders - attention.diagonal(dim1=-2, dim2=-1)
    top = diagonal.sort(-1, descending=True).values[:, :k]
    return torch.nn.functional.pad(top, (0, k - top.shape[-1]))


def answer_attention_rows(attention: Tensor, answer: Tensor) -> Tensor:
    """``[m, T]``: each answer token's attention over the sequence, averaged over heads."""
    return attention[:, answer, :].float().mean(0)


def attention_shift(previous: Tensor, current: Tensor) -> Tensor:
    """HalluShift between two layers' answer attention rows ``[m, T]`` (distributions over
    positions): ``[Wasserstein-1 over positions / T, cosine distance]``, averaged over tokens."""
    seq_len = previous.shape[-1]
    wasserstein = (previous.cumsum(-1) - current.cumsum(-1)).abs().sum(-1) / seq_len
    cosine = torch.nn.functional.cosine_similarity(previous, current, dim=-1)
    return torch.stack([wasserstein.mean(), (1 - cosine).mean()])


def hidden_shift(previous: Tensor, current: Tensor) -> Tensor:
    """HalluShift between two layers' mean answer states ``[d]``: ``[Wasserstein-1 between
    their value distributions, cosine distance]``."""
    previous, current = previous.float(), current.float()
    wasserstein = (previous.sort().values - current.sort().values).abs().mean()
    cosine = torch.nn.functional.cosine_similarity(previous, current, dim=0)
    return torch.stack([wasserstein, 1 - cosine])
