"""The trace record: one answered question's final state (DESIGN.md, "Contracts")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from extraction.store.layout import unpack_causal

SEED_FIELDS = (
    "question_id",
    "generated_answer_clean",
    "hidden_states",
    "attentions",
    "tokens",
    "tokens_decoded",
)

EMBEDDINGS = 0  # the hidden-state index of the embedding output


def resid_post_index(block: int) -> int:
    """The hidden-state index of block ``block``'s output (the one place that adds the 1)."""
    return block + 1


def hidden_state_indices(blocks: Iterable[int]) -> list[int]:
    """The hidden states kept with these blocks' attention: the embeddings and their outputs."""
    return [EMBEDDINGS, *(resid_post_index(block) for block in blocks)]


def complete_blocks(attention_blocks: Iterable[int], hidden_indices: Iterable[int]) -> list[int]:
    """The blocks whose attention and output hidden state are both kept, in order."""
    hidden = set(hidden_indices)
    return sorted(block for block in attention_blocks if resid_post_index(block) in hidden)


@dataclass
class Trace:
    """Everything kept for one question.

    Index convention (one for the whole project): ``hidden_states[0]`` is the embedding output and
    ``hidden_states[l + 1]`` the output of block ``l``; ``attentions[l]`` is block ``l``'s attention
    ``[heads, T, T]`` where ``attn[h, i, j]`` is how much token ``i`` attends to token ``j``, or
    its packed lower triangle ``[heads, T(T+1)/2]`` in the storage dtype (what the final-state pass
    hands the writer; :meth:`attention` unpacks it).
    Both are dicts so that a store written with ``--layers`` still indexes by the model's numbering.
    Positions ``0 .. n_prompt_tokens-1`` are the prompt, the rest the answer. One of several
    generations of a question (``--num_generations``) has its own ``question_id``
    (``{source_question_id}#{generation}``); generation 0 is the beam-search answer.
    """

    question_id: str
    question: str
    generated_answer_clean: str
    tokens: torch.Tensor
    tokens_decoded: list[str]
    n_prompt_tokens: int
    hidden_states: dict[int, torch.Tensor]
    attentions: dict[int, torch.Tensor]
    token_logprobs: torch.Tensor
    token_entropy: torch.Tensor
    answer_end: str = "eos"
    gold: dict = field(default_factory=dict)
    label: int | None = None
    label_method: str | None = None
    label_score: float | None = None
    source_question_id: str | None = None
    generation: int = 0

    @property
    def unit(self) -> str:
        """The question this trace answers (its own id unless it is one of several generations;
        DESIGN.md, "Contracts")."""
        return self.source_question_id or self.question_id

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_answer_tokens(self) -> int:
        return self.seq_len - self.n_prompt_tokens

    @property
    def embeddings(self) -> torch.Tensor:
        """``[T, hidden]``: the embedding output."""
        return self.hidden_states[EMBEDDINGS]

    def resid_post(self, block: int) -> torch.Tensor:
        """``[T, hidden]``: the output of block ``block``."""
        return self.hidden_states[resid_post_index(block)]

    def attention(self, block: int) -> torch.Tensor:
        """``[heads, T, T]`` of block ``block``."""
        attention = self.attentions[block]
        return attention if attention.dim() == 3 else unpack_causal(attention, self.seq_len)

    @property
    def stored_blocks(self) -> list[int]:
        """The blocks whose attention and output hidden state this trace holds."""
        return complete_blocks(self.attentions, self.hidden_states)

    def seed_record(self) -> dict:
        """The seed's six-field dict (numpy arrays, lists ordered by layer index). One of several
        generations of a question is addressed as the question's id plus ``generation``."""
        record = {
            "question_id": self.unit,
            "generated_answer_clean": self.generated_answer_clean,
            "hidden_states": [
                self.hidden_states[i].float().numpy() for i in sorted(self.hidden_states)
            ],
            "attentions": [self.attention(i).float().numpy() for i in sorted(self.attentions)],
            "tokens": self.tokens.numpy(),
            "tokens_decoded": list(self.tokens_decoded),
        }
        if self.source_question_id is not None:
            record["generation"] = self.generation
        return record
