"""The final state: one eager forward pass over prompt + answer (DESIGN.md, "The final state").

``generate`` with its KV cache only ever sees the newest token, so the full ``[heads, T, T]``
attention and ``[T, hidden]`` states are taken here, in one batched pass. Left padding with
explicit ``position_ids``, then cutting pad rows and columns, gives the unbatched result to
rounding: masked columns get exactly zero weight after the softmax.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from extraction.padding import left_pad, position_ids
from extraction.trace import hidden_state_indices


@dataclass
class FinalState:
    hidden_states: dict[int, torch.Tensor]  # HF index → [T, hidden]
    attentions: dict[int, torch.Tensor]  # block → [heads, T, T]
    token_logprobs: torch.Tensor  # [n_answer] log p(chosen token)
    token_entropy: torch.Tensor  # [n_answer] entropy (nats) of the distribution it came from


@contextmanager
def eager_attention(model):
    """Only the eager kernel returns attention weights; switch to it for the pass, then back."""
    previous = model.config._attn_implementation
    if previous == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def final_state_pass(
    model,
    sequences: list[list[int]],
    n_prompt_tokens: list[int],
    pad_id: int,
    attention_blocks: list[int],
) -> list[FinalState]:
    """Hidden states of every kept layer and attention of every kept block, per sequence.

    ``attention_blocks`` are block indices ``l``; the hidden states kept with them are the
    embedding output (index 0) and the outputs ``l + 1`` of those blocks.
    """
    input_ids, mask = left_pad(sequences, pad_id)
    device = model.device
    with torch.inference_mode(), eager_attention(model):
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids(mask).to(device),
            output_attentions=True,
            output_hidden_states=True,
            use_cache=False,
        )
    hidden_indices = hidden_state_indices(attention_blocks)
    width = input_ids.shape[1]
    states = []
    for row, (seq, n_prompt) in enumerate(zip(sequences, n_prompt_tokens, strict=True)):
        start = width - len(seq)
        logits = out.logits[row, start:].float()
        log_probs = torch.log_softmax(logits, dim=-1)
        # Position k-1 predicts token k; the answer is tokens n_prompt .. T-1.
        predicting = log_probs[n_prompt - 1 : len(seq) - 1]
        chosen = torch.as_tensor(seq[n_prompt:], device=predicting.device)
        states.append(
            FinalState(
                hidden_states={i: out.hidden_states[i][row, start:].cpu() for i in hidden_indices},
                attentions={
                    b: out.attentions[b][row, :, start:, start:].cpu() for b in attention_blocks
                },
                token_logprobs=predicting.gather(1, chosen[:, None]).squeeze(1).cpu(),
                token_entropy=-(predicting.exp() * predicting).sum(-1).cpu(),
            )
        )
    return states
