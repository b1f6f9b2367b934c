"""Batched answer generation with the fast attention kernel, and the clean cut of each answer.

Nothing is requested from ``generate`` but the sequences: attentions and hidden states come from
one separate forward pass (``final_state.py``; DESIGN.md explains why).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from extraction.beam_search import compacting_beam_search, verified
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
class Sampling:
    """How the samples (generations 1..K-1 of ``--num_generations K``) are drawn: multinomial
    sampling at ``temperature`` from the nucleus ``top_p`` (no top-k cut: HF's default of 50 is
    switched off), each question's samples from its own seed (:func:`question_seed`)."""

    temperature: float = 0.5
    top_p: float = 0.99
    max_new_tokens: int = 64
    seed: int = 0

    def generate_kwargs(self, num_samples: int) -> dict:
        return {
            "do_sample": True,
            "num_beams": 1,
            "num_return_sequences": num_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": 0,
            "max_new_tokens": self.max_new_tokens,
        }


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
    if kwargs["num_beams"] > 1 and not kwargs["do_sample"] and verified():
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


def question_seed(seed: int, question_id: str) -> int:
    """The seed of one question's samples: from ``--seed`` and the question id only, so a resume
    (or another ``--batch_size``) draws the same samples."""
    digest = hashlib.sha256(f"{seed}\0{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_answers(
    model,
    tokenizer,
    prompt: list[int],
    num_samples: int,
    sampling: Sampling,
    seed: int,
    stop_strings=DEFAULT_STOP_STRINGS,
) -> list[Answer]:
    """``num_samples`` sampled answers to one prompt (token ids), drawn from ``seed``.

    One prompt per call, with no padding: HF's sampler draws from the global generator, so only
    a call of its own makes a question's samples independent of the rest of the batch. The
    global generator is restored afterwards."""
    device = model.device
    input_ids = torch.as_tensor([prompt], dtype=torch.long, device=device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        sequences = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pad_token_id=tokenizer.pad_token_id,
            **sampling.generate_kwargs(num_samples),
        )
    eos_ids = _eos_ids(model, tokenizer)
    new_tokens = sequences[:, len(prompt) :].tolist()
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
