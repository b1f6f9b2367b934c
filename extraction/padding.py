"""Left padding for batched decoder-only passes."""

from __future__ import annotations

import torch


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` ``[B, T_max]`` with the padding on the left, so every
    sequence ends at the last column (where generation continues)."""
    width = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            input_ids[row, width - len(seq) :] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return input_ids, mask


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each sequence's first real token: a left-padded row then sees the
    same rotary positions as when it runs alone."""
    return (mask.cumsum(-1) - 1).clamp(min=0)
