"""Batched answer generation with the fast attention kernel, and the clean cut of each answer.

Nothing is requested from ``generate`` but the sequences: attentions and hidden states come from
one separate forward pass (``final_state.py``; DESIGN.md explains why).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from extraction.beam_search import compacting_beam_search
from extraction.padding import left_pad

DEFAULT_STOP_STRINGS = ("\n", "Question:")


@dataclass(frozen=True)
class Decoding:
    """The seed's decoding: beam search, 5 beams, no sampling, 64 new tokens, early stopping.
    ``num_beams=1`` is greedy decoding."""

    num_beams: int = 5
    max_new_tokens: int = 64
    early_stopping: bool = True

    def generate_kwargs(self) -> dict:
        kwargs = {"num_beams": self.num_beams, "do_sample": False}
        kwargs["max_new_tokens"] = self.max_new_tokens
        if self.num_beams > 1:
            kwargs["early_stopping"] = self.early_stopping
        return kwargs


@dataclass(frozen=True)
class Answer:
    """``answer_ids`` is what the trace keeps after the prompt: the answer up to its clean end,
    including the EOS token when the model stopped by itself (as in the seed's traces)."""

    answer_ids: list[int]
    text: str
    end: str  # "eos", "stop_string" (cut at a stop string) or "length" (max_new_tokens reached)


def generate_answers(
    model,
    tokenizer,
    prompts: list[list[int]],
    decoding: Decoding,
    stop_strings=DEFAULT_STOP_STRINGS,
) -> list[Answer]:
    """Best beam for each prompt (token ids), generated as one left-padded batch."""
    input_ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    device = model.device
    kwargs = decoding.generate_kwargs()
    if kwargs["num_beams"] > 1 and not kwargs["do_sample"]:
        kwargs["custom_generate"] = compacting_beam_search  # same answers, less work
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )
    new_tokens = sequences[:, input_ids.shape[1] :].tolist()
    eos_ids = _eos_ids(model, tokenizer)
    return [cut_answer(tokens, tokenizer, eos_ids, stop_strings) for tokens in new_tokens]


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def cut_answer(tokens: list[int], tokenizer, eos_ids: set[int], stop_strings) -> Answer:
    """End the answer at the first EOS, or before the token where a stop string (default: a line
    break, or the prompt's "Question:" coming back) first appears after the answer has started.

    This is what keeps "Pepper\\n\\nAnswer the question concisely.\\n\\nQ: ..." down to "Pepper",
    and it cuts the tokens too, so the trace's graph ends where the answer ends.
    """
    end = "length"
    for position, token in enumerate(tokens):
        if token in eos_ids:
            tokens, end = tokens[: position + 1], "eos"
            break
    content = tokens[:-1] if end == "eos" else tokens

    def text_of(n_tokens: int) -> str:
        return tokenizer.decode(content[:n_tokens], skip_special_tokens=True).lstrip()

    for position in range(1, len(content) + 1):
        text = text_of(position)
        starts = [text.find(stop) for stop in stop_strings if stop in text]
        if starts:
            # A stop string may span several tokens ("Question" + ":"): drop every token that
            # reaches into it.
            keep = position
            while keep > 0 and len(text_of(keep)) > min(starts):
                keep -= 1
            tokens, end = content[:keep], "stop_string"
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return Answer(answer_ids=list(tokens), text=text, end=end)
