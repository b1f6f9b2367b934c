"""Where an answer ends: EOS, stop strings, length."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from extraction.generation import DEFAULT_STOP_STRINGS, cut_answer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_eos_ends_the_answer_and_stays_in_the_trace(tokenizer):
    eos = tokenizer.eos_token_id
    tokens = [*ids(tokenizer, " Paris is the capital."), eos, eos, eos]
    answer = cut_answer(tokens, tokenizer, {eos}, DEFAULT_STOP_STRINGS)
    assert answer.end == "eos"
    assert answer.answer_ids == tokens[: tokens.index(eos) + 1]
    assert answer.text == "Paris is the capital."


def test_answer_that_runs_on_into_the_prompt_is_cut(tokenizer):
    text = " Pepper\n\nAnswer the question concisely.\n\nQuestion: What is"
    answer = cut_answer(ids(tokenizer, text), tokenizer, {tokenizer.eos_token_id}, ("\n",))
    assert answer.text == "Pepper"
    assert answer.end == "stop_string"
    assert tokenizer.decode(answer.answer_ids).strip() == "Pepper"


def test_question_marker_on_the_same_line_is_cut(tokenizer):
    tokens = ids(tokenizer, " Rome. Question: What is the capital of Spain?")
    answer = cut_answer(tokens, tokenizer, {tokenizer.eos_token_id}, DEFAULT_STOP_STRINGS)
    assert answer.text == "Rome."


def test_leading_newline_does_not_end_an_answer_before_it_starts(tokenizer):
    tokens = ids(tokenizer, "\n Canberra\nmore")
    answer = cut_answer(tokens, tokenizer, {tokenizer.eos_token_id}, DEFAULT_STOP_STRINGS)
    assert answer.text == "Canberra"


def test_length_limit(tokenizer):
    tokens = ids(tokenizer, " one two three")
    answer = cut_answer(tokens, tokenizer, {tokenizer.eos_token_id}, DEFAULT_STOP_STRINGS)
    assert (answer.end, answer.answer_ids, answer.text) == ("length", tokens, "one two three")
