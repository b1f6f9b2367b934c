"""Hidden states must fit the storage dtype before they are stored.

Gemma-3's residual stream reaches ~1e5 in its middle blocks, past float16's largest value
(65504): a plain cast would store ``inf`` without a word. The run stops on the first such
trace instead, with the flag that fixes it.
"""

from __future__ import annotations

import torch

from common import UserError
from extraction.final_state import FinalState


def check_storable(states: list[FinalState], storage_dtype: str) -> None:
    """One ``error:`` line if a hidden state is not finite, or will not be once cast."""
    dtype = getattr(torch, storage_dtype)
    largest = torch.finfo(dtype).max
    for state in states:
        for index, hidden in state.hidden_states.items():
            if not bool(torch.isfinite(hidden).all()):
                raise UserError(
                    f"the model's hidden state {index} is not finite ({hidden.dtype} compute "
                    "overflows for some models, e.g. Gemma-3 in float16): rerun with "
                    "--torch-dtype bfloat16 or float32"
                )
            peak = float(hidden.abs().max())
            if peak > largest:
                raise UserError(
                    f"hidden state {index} reaches {peak:.3g}, beyond {storage_dtype}'s range "
                    f"({largest:.5g}): rerun with --dtype bfloat16 (float32's range) or float32, "
                    "and --overwrite if this store was started"
                )
