"""The compacting beam search returns exactly what transformers' beam search returns."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from extraction.beam_search import compacting_beam_search
from extraction.padding import left_pad

QUESTIONS = [
    "Which planet is closest to the sun?",
    "Who wrote Hamlet?",
    "In which country would you find the city of Timbuktu, on the edge of the Sahara?",
    "What is the chemical symbol for gold?",
    "Which composer wrote the opera The Magic Flute?",
    "What is the capital of Australia?",
]


def prompts(tokenizer) -> list[list[int]]:
    return [tokenizer(f"Question: {q}\nAnswer:")["input_ids"] for q in QUESTIONS]


def generate(model, tokenizer, batch, custom: bool, **decoding) -> torch.Tensor:
    input_ids, mask = left_pad(batch, tokenizer.pad_token_id)
    extra = {"custom_generate": compacting_beam_search} if custom else {}
    with torch.inference_mode():
        return model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
            **decoding,
            **extra,
        )


class RowsPerForward:
    """The batch rows of every forward pass of ``model``."""

    def __init__(self, model) -> None:
        self.rows: list[int] = []
        self.handle = model.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, module, args, kwargs) -> None:
        self.rows.append(kwargs["input_ids"].shape[0])


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny Llama with larger random weights: its answers depend on the question, so
    questions finish at different steps (with the default scale each repeats one token)."""
    config = AutoConfig.from_pretrained(tiny_model_dir, initializer_range=1.0)
    torch.manual_seed(0)
    return (
        AutoModelForCausalLM.from_config(config).eval(),
        AutoTokenizer.from_pretrained(tiny_model_dir),
    )


@pytest.mark.parametrize("num_beams", [2, 3, 5])
def test_same_sequences_as_transformers_when_questions_end_at_different_steps(tiny, num_beams):
    model, tokenizer = tiny
    batch = prompts(tokenizer)
    # The random model never says EOS; make its most frequent tokens end hypotheses instead, so
    # that questions finish at different steps and leave the batch.
    first = generate(model, tokenizer, batch, False, num_beams=num_beams, max_new_tokens=24)
    common = Counter(first[:, -24:].flatten().tolist()).most_common(6)
    decoding = {
        "num_beams": num_beams,
        "max_new_tokens": 24,
        "early_stopping": True,
        "eos_token_id": [token for token, _ in common],
    }
    expected = generate(model, tokenizer, batch, False, **decoding)
    counter = RowsPerForward(model)
    try:
        got = generate(model, tokenizer, batch, True, **decoding)
    finally:
        counter.handle.remove()
    assert torch.equal(got, expected)
    # Each prompt ran once, then the batch shrank as questions finished.
    assert counter.rows[0] == len(batch)
    assert counter.rows[1] == len(batch) * num_beams
    assert min(counter.rows[1:]) < len(batch) * num_beams
    assert counter.rows[1:] == sorted(counter.rows[1:], reverse=True)


def test_length_limit_and_early_stopping_off(tiny):
    model, tokenizer = tiny
    batch = prompts(tokenizer)[:3]
    for decoding in (
        {"num_beams": 4, "max_new_tokens": 5},
        {"num_beams": 2, "max_new_tokens": 7, "early_stopping": False},
    ):
        expected = generate(model, tokenizer, batch, False, **decoding)
        assert torch.equal(generate(model, tokenizer, batch, True, **decoding), expected)


def test_logits_processors_run_transformers_loop(tiny):
    model, tokenizer = tiny
    batch = prompts(tokenizer)[:2]
    decoding = {"num_beams": 3, "max_new_tokens": 6, "repetition_penalty": 1.3}
    expected = generate(model, tokenizer, batch, False, **decoding)
    assert torch.equal(generate(model, tokenizer, batch, True, **decoding), expected)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("model", ["smollm2_135M", "gemma3_270M"])
def test_real_model_seed_decoding_same_sequences(shared_data, model):
    """SmolLM2-135M-Instruct and Gemma-3-270M, the seed's prompt and decoding, 8 real TriviaQA
    questions."""
    from extraction.models import load_model
    from extraction.prompts import SEED_PROMPT
    from extraction.questions import load_questions

    loaded = load_model(model, quantization="none")
    questions = load_questions("triviaqa", str(shared_data / "triviaqa" / "validation.jsonl"), 8)
    batch = [
        loaded.tokenizer(SEED_PROMPT.format(question=q.question))["input_ids"] for q in questions
    ]
    decoding = {"num_beams": 5, "max_new_tokens": 64, "early_stopping": True}
    expected = generate(loaded.model, loaded.tokenizer, batch, False, **decoding)
    got = generate(loaded.model, loaded.tokenizer, batch, True, **decoding)
    assert torch.equal(got, expected)


def test_another_transformers_version_falls_back_to_stock_generate(tiny, monkeypatch, caplog):
    """Under a transformers release the search was not verified with, ``generate_answers``
    uses stock ``generate`` (one log line, however many batches) and gets its answers."""
    from extraction.beam_search import _Search, _verified
    from extraction.generation import Decoding, generate_answers

    model, tokenizer = tiny
    batch = prompts(tokenizer)[:3]
    decoding = Decoding(num_beams=3, max_new_tokens=24)
    expected = generate_answers(model, tokenizer, batch, decoding)
    monkeypatch.setattr("extraction.beam_search.transformers.__version__", "0.0.untested")
    _verified.cache_clear()

    def not_verified(*args, **kwargs):
        raise AssertionError("the compacting search ran under an unverified transformers")

    monkeypatch.setattr(_Search, "run", not_verified)
    try:
        with caplog.at_level("WARNING", logger="extraction.beam_search"):
            got = generate_answers(model, tokenizer, batch, decoding)
            generate_answers(model, tokenizer, batch, decoding)
    finally:
        _verified.cache_clear()
    assert got == expected
    assert [r.getMessage() for r in caplog.records] == [
        "transformers 0.0.untested is not 5.24.0, the version the compacting beam search was "
        "verified with: using stock generate (same answers, slower)"
    ]
