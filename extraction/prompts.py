"""Prompt construction: the seed's one-sentence template, optionally wrapped in the model's chat
template (instruct models answer more cleanly inside their own format)."""

from __future__ import annotations

from common import UserError

SEED_PROMPT = "Answer the question concisely in one sentence.\n\nQuestion: {question}\nAnswer:"


def build_prompt(
    question: str, tokenizer, template: str = SEED_PROMPT, chat_template: bool = False
) -> str:
    if "{question}" not in template:
        raise UserError("--prompt_template must contain {question}")
    text = template.format(question=question)
    if not chat_template:
        return text
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("this tokenizer has no chat template; drop --chat_template")
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompt(prompt: str, tokenizer, chat_template: bool) -> list[int]:
    """Token ids of one prompt; a chat-rendered prompt already carries its special tokens."""
    return tokenizer(prompt, add_special_tokens=not chat_template)["input_ids"]
