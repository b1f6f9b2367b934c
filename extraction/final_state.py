"""The final state: one eager forward pass over prompt + answer (DESIGN.md, "The final state").

``generate`` with its KV cache only ever sees the newest token, so the full attention and
``[T, hidden]`` states are taken here, in one batched pass. Left padding with explicit
``position_ids``, then cutting pad rows and columns, gives the unbatched result to rounding:
masked columns get exactly zero weight after the softmax.

Memory grows with ``T²`` for one block, not for all of them: a forward hook on each block's
attention module takes its ``[B, heads, T, T]`` float32 weights as they are produced, keeps each
sequence's packed lower triangle in the storage dtype (kept blocks only) and drops the weights
before the next block runs. Only the kept hidden states are collected, and only the answer
positions' logits computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from common import UserError
from extraction.padding import left_pad, position_ids
from extraction.store.layout import pack_causal
from extraction.store.trace import hidden_state_indices


@dataclass
class FinalState:
    hidden_states: dict[int, torch.Tensor]  # HF index → [T, hidden], compute dtype
    attentions: dict[int, torch.Tensor]  # block → [heads, T(T+1)/2], packed, storage dtype
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


def attention_modules(model) -> list[torch.nn.Module]:
    """Each block's self-attention module, in block order (``decoder.layers[l].self_attn``)."""
    try:
        return [layer.self_attn for layer in model.get_decoder().layers]
    except AttributeError:
        raise UserError(
            f"{type(model).__name__} has no decoder.layers[l].self_attn: the final-state pass "
            "cannot take its attention"
        ) from None


@contextmanager
def packed_attention_hooks(
    model, blocks: list[int], starts: list[int], storage_dtype: torch.dtype
) -> Iterator[list[dict[int, torch.Tensor]]]:
    """While active, each block's attention weights are cut to each row's sequence (row ``r``
    starts at column ``starts[r]``), packed and cast as soon as the block produces them; yields
    the per-row dicts ``block → [heads, T(T+1)/2]`` they fill. Every block's weights are dropped
    from its output, so transformers keeps none. The hooks are removed on the way out, also
    after an exception."""
    kept = set(blocks)
    packed: list[dict[int, torch.Tensor]] = [{} for _ in starts]

    def take(block: int):
        def hook(module, args, output):
            attn_output, weights, *rest = output
            if weights is None:
                raise RuntimeError(f"block {block} returned no attention weights (not eager?)")
            if block in kept:
                for row, start in enumerate(starts):
                    sequence = weights[row, :, start:, start:].to(storage_dtype)
                    packed[row][block] = pack_causal(sequence).cpu()
            return attn_output, None, *rest

        return hook

    modules = attention_modules(model)
    handles = []
    try:
        for block, module in enumerate(modules):
            handles.append(module.register_forward_hook(take(block)))
        yield packed
    finally:
        for handle in handles:
            handle.remove()


def final_state_pass(
    model,
    sequences: list[list[int]],
    n_prompt_tokens: list[int],
    pad_id: int,
    attention_blocks: list[int],
    *,
    storage_dtype: torch.dtype,
) -> list[FinalState]:
    """Hidden states of every kept layer and attention of every kept block, per sequence.

    ``attention_blocks`` are block indices ``l``; the hidden states kept with them are the
    embedding output (index 0) and the outputs ``l + 1`` of those blocks. Attention comes back
    as the store keeps it: the packed lower triangle in ``storage_dtype``.
    """
    input_ids, mask = left_pad(sequences, pad_id)
    width = input_ids.shape[1]
    starts = [width - len(seq) for seq in sequences]
    n_answer = [
        len(seq) - n_prompt for seq, n_prompt in zip(sequences, n_prompt_tokens, strict=True)
    ]
    # Position k-1 predicts token k: the answer's predictions are the last n_answer + 1
    # columns but the very last (every row ends at the last column).
    kept_logits = max(n_answer) + 1
    hidden_indices = hidden_state_indices(attention_blocks)
    device = model.device
    with (
        torch.inference_mode(),
        eager_attention(model),
        packed_attention_hooks(model, attention_blocks, starts, storage_dtype) as attentions,
    ):
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids(mask).to(device),
            output_hidden_states=hidden_indices,  # transformers keeps only these
            use_cache=False,
            logits_to_keep=kept_logits,
        )
    states = []
    for row, (seq, start, answer) in enumerate(zip(sequences, starts, n_answer, strict=True)):
        logits = out.logits[row, kept_logits - answer - 1 : kept_logits - 1].float()
        predicting = torch.log_softmax(logits, dim=-1)
        chosen = torch.as_tensor(seq[len(seq) - answer :], device=predicting.device)
        states.append(
            FinalState(
                hidden_states={i: out.hidden_states[i][row, start:].cpu() for i in hidden_indices},
                attentions=attentions[row],
                token_logprobs=predicting.gather(1, chosen[:, None]).squeeze(1).cpu(),
                token_entropy=-(predicting.exp() * predicting).sum(-1).cpu(),
            )
        )
    return states
