"""The trace record: one answered question's final state (DESIGN.md, "Contracts")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SEED_FIELDS = (
    "question_id",
    "generated_answer_clean",
    "hidden_states",
    "attentions",
    "tokens",
    "tokens_decoded",
)


@dataclass
class Trace:
    """Everything kept for one question.

    Index convention (one for the whole project): ``hidden_states[0]`` is the embedding output and
    ``hidden_states[l + 1]`` the output of block ``l``; ``attentions[l]`` is block ``l``'s attention
    ``[heads, T, T]`` where ``attn[h, i, j]`` is how much token ``i`` attends to token ``j``.
    Both are dicts so that a store written with ``--layers`` still indexes by the model's numbering.
    Positions ``0 .. n_prompt_tokens-1`` are the prompt, the rest the answer.
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

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_answer_tokens(self) -> int:
        return self.seq_len - self.n_prompt_tokens

    def seed_record(self) -> dict:
        """The seed's six-field dict (numpy arrays, lists ordered by layer index)."""
        return {
            "question_id": self.question_id,
            "generated_answer_clean": self.generated_answer_clean,
            "hidden_states": [
                self.hidden_states[i].float().numpy() for i in sorted(self.hidden_states)
            ],
            "attentions": [self.attentions[i].float().numpy() for i in sorted(self.attentions)],
            "tokens": self.tokens.numpy(),
            "tokens_decoded": list(self.tokens_decoded),
        }


def _numpy_list(by_layer: dict[int, torch.Tensor]) -> list:
    return [by_layer[index].float().numpy() for index in sorted(by_layer)]
