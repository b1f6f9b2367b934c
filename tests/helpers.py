"""Helpers the tests share (imported by test files and conftest.py; a test file imports no other
test file)."""

from __future__ import annotations

import torch


def random_attention(heads: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """``[heads, T, T]`` causal attention whose rows sum to 1."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(heads, seq_len, seq_len, generator=generator)
    causal = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
    weights = scores.masked_fill(~causal, 0)
    return weights / weights.sum(-1, keepdim=True)
