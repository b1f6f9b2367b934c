"""Compact attention storage (``--attention_format sparse --min_attention W``).

Graphs keep an edge when the *combined* attention (the head mean, the head max, any head) is at
least their threshold, so dropping each head's weights below ``W`` on their own would change a
head mean. Instead a block keeps **every head's weight at each position where some head reaches
W** (mean >= t >= W implies max >= W), plus the whole diagonal (self-attention, read densely by
``attention_diagonal`` node features and LLM-Check). Everything else reads back as 0.

Layout per block, CSR over the rows of the ``[T, T]`` matrix, shared by the heads:
``attentions.{b}`` the values ``[heads, nnz]`` in the store dtype, ``attention_columns.{b}``
the column of each kept position ``[nnz]`` (int16 while ``T <= 32768``, else int32) and
``attention_row_offsets.{b}`` ``[T + 1]`` where row ``i``'s positions start (int32 below 2**31
positions). Per kept position that is ``2 * heads + 2`` bytes against ``2 * heads`` for each
lower-triangle position of the dense layout.

A position is kept when its head max is ``>= W * (1 - KEEP_MARGIN)``: the float32 mean of up
to 2048 values, each below that, stays below W despite rounding, so every head mean of one
block that reaches a threshold ``t >= W`` is built from stored values only. (Blocks keep their
own positions: a head mean over several blocks side by side would read another block's
unkept weights as 0, so ``graphs`` refuses it on a sparse store.)
"""

from __future__ import annotations

import torch

from common import UserError

ATTENTION_FORMATS = ("dense", "sparse")
KEEP_MARGIN = 2**-12
VALUES = "attentions"  # the dense layout's tensor kind: one name for a block's weights
ROW_OFFSETS = "attention_row_offsets"
COLUMNS = "attention_columns"
INDEX_KINDS = (ROW_OFFSETS, COLUMNS)


def check_attention_format(attention_format: str | None, min_attention: float | None) -> None:
    """One-line errors for a format and ``W`` that do not go together."""
    if attention_format not in ATTENTION_FORMATS:
        raise UserError(
            f"--attention_format {attention_format!r} is not one of {', '.join(ATTENTION_FORMATS)}"
        )
    if attention_format == "dense" and min_attention is not None:
        raise UserError(
            "--min_attention is for --attention_format sparse; drop it or add "
            "--attention_format sparse"
        )
    if attention_format == "sparse" and (
        min_attention is None or isinstance(min_attention, bool) or not 0 < min_attention <= 1
    ):
        raise UserError(
            f"--attention_format sparse needs --min_attention W in (0, 1] (got {min_attention}); "
            "graphs then need a threshold >= W, e.g. W = 0.01, the graphs' default threshold"
        )


def _index_dtype(largest: int) -> torch.dtype:
    """The narrowest signed integer type that holds ``0 .. largest``."""
    if largest < 2**15:
        return torch.int16
    return torch.int32 if largest < 2**31 else torch.int64


def encode_sparse(
    packed: torch.Tensor, seq_len: int, min_attention: float
) -> dict[str, torch.Tensor]:
    """``[heads, T(T+1)/2]`` packed lower triangle (``layout.pack_causal``, store dtype) →
    ``{VALUES, ROW_OFFSETS, COLUMNS}`` (tensor kinds) of the kept positions, row by row."""
    rows, columns = torch.tril_indices(seq_len, seq_len, device=packed.device)
    strongest = packed.float().amax(dim=0)  # float16 reductions are slow on CPU
    keep = (strongest >= min_attention * (1 - KEEP_MARGIN)) | (rows == columns)
    kept = keep.nonzero().squeeze(1)
    counts = torch.bincount(rows[kept], minlength=seq_len)
    offsets = torch.zeros(seq_len + 1, dtype=torch.int64, device=packed.device)
    torch.cumsum(counts, dim=0, out=offsets[1:])
    return {
        VALUES: packed.index_select(1, kept),
        ROW_OFFSETS: offsets.to(_index_dtype(len(kept))),
        COLUMNS: columns[kept].to(_index_dtype(seq_len - 1)),
    }


def decode_sparse(
    values: torch.Tensor, row_offsets: torch.Tensor, columns: torch.Tensor, seq_len: int
) -> torch.Tensor:
    """The dense ``[heads, T, T]`` of :func:`encode_sparse`'s tensors (zeros where not kept)."""
    counts = row_offsets[1:].long() - row_offsets[:-1].long()
    rows = torch.repeat_interleave(torch.arange(seq_len), counts)
    flat = rows * seq_len + columns.long()
    full = values.new_zeros((values.shape[0], seq_len * seq_len))
    full.index_copy_(1, flat, values)
    return full.view(values.shape[0], seq_len, seq_len)
