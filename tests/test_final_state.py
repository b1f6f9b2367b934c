"""The stored final state is the real one: causal attention rows, equal to an independent eager
pass, batched equal to unbatched, and tokens aligned with states."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from extraction.final_state import final_state_pass
from extraction.prompts import SEED_PROMPT
from extraction.store import TraceStore

FP16_TOL = 2e-3  # fp16 storage: ~3 significant digits


def check_attention_is_causal_softmax(store: TraceStore) -> None:
    num_heads = store.manifest.model.num_heads
    for qid in store.question_ids:
        seq_len = store.row(qid).seq_len
        for block in store.manifest.settings.attention_layers:
            attention = store.attention(qid, block).float()
            assert attention.shape == (num_heads, seq_len, seq_len)
            assert torch.count_nonzero(torch.triu(attention, diagonal=1)) == 0
            torch.testing.assert_close(
                attention.sum(-1), torch.ones(num_heads, seq_len), atol=FP16_TOL * 4, rtol=0
            )


def test_attention_shape_causal_and_rows_sum_to_one(tiny_store):
    check_attention_is_causal_softmax(TraceStore(tiny_store))


def test_store_equals_an_independent_eager_forward_pass(tiny_store, tiny_model_dir):
    store = TraceStore(tiny_store)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    for qid in store.question_ids:
        tokens = store.tokens(qid)
        with torch.no_grad():
            out = model(tokens[None], output_attentions=True, output_hidden_states=True)
        for block, reference in enumerate(out.attentions):
            torch.testing.assert_close(
                store.attention(qid, block).float(), reference[0], atol=FP16_TOL, rtol=0
            )
        blocks = range(len(out.attentions))
        stored = [store.embeddings(qid)] + [store.resid_post(qid, block) for block in blocks]
        for hidden, reference in zip(stored, out.hidden_states, strict=True):
            torch.testing.assert_close(hidden.float(), reference[0], atol=FP16_TOL, rtol=FP16_TOL)


def test_batched_pass_equals_unbatched(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    sequences = [torch.randint(5, 1000, (n,)).tolist() for n in (7, 19, 12)]
    prompts = [4, 10, 6]
    blocks = list(range(model.config.num_hidden_layers))
    batched = final_state_pass(model, sequences, prompts, pad_id=2, attention_blocks=blocks)
    for seq, n_prompt, together in zip(sequences, prompts, batched, strict=True):
        (alone,) = final_state_pass(model, [seq], [n_prompt], pad_id=2, attention_blocks=blocks)
        for block in blocks:
            torch.testing.assert_close(together.attentions[block], alone.attentions[block])
        for index in alone.hidden_states:
            torch.testing.assert_close(together.hidden_states[index], alone.hidden_states[index])
        torch.testing.assert_close(together.token_logprobs, alone.token_logprobs)
        assert together.token_logprobs.shape == (len(seq) - n_prompt,)
    assert model.config._attn_implementation == "sdpa"  # switched back after the pass


def test_tokens_decoded_and_answer_line_up(tiny_store, tiny_model_dir):
    store = TraceStore(tiny_store)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for trace in store:
        assert len(trace.tokens_decoded) == trace.seq_len == trace.tokens.shape[0]
        assert trace.tokens_decoded == [tokenizer.decode([t]) for t in trace.tokens.tolist()]
        for hidden in trace.hidden_states.values():
            assert hidden.shape[0] == trace.seq_len
        prompt = SEED_PROMPT.format(question=trace.question)
        assert trace.tokens[: trace.n_prompt_tokens].tolist() == tokenizer(prompt)["input_ids"]
        answer = tokenizer.decode(trace.tokens[trace.n_prompt_tokens :], skip_special_tokens=True)
        assert answer.strip() == trace.generated_answer_clean
        assert trace.token_logprobs.shape == trace.token_entropy.shape == (trace.n_answer_tokens,)
        assert bool((trace.token_logprobs <= 0).all()) and bool((trace.token_entropy >= 0).all())


@pytest.mark.slow
def test_real_model_traces(smollm2_triviaqa_store, smollm2_truthfulqa_store):
    for path in (smollm2_triviaqa_store, smollm2_truthfulqa_store):
        store = TraceStore(path)
        assert len(store) == 20 and not store.errors
        assert asdict(store.manifest.model) | {"device": "cpu"} == {
            "num_layers": 30, "num_heads": 9, "hidden_size": 576, "vocab_size": 49152,
            "architecture": "LlamaForCausalLM", "device": "cpu",
        }  # fmt: skip
        check_attention_is_causal_softmax(store)
        for trace in store:
            if not trace.generated_answer_clean:  # SmolLM2 sometimes answers with EOS alone
                assert trace.answer_end == "eos" and trace.n_answer_tokens == 1
            assert "Question:" not in trace.generated_answer_clean
            assert "\n" not in trace.generated_answer_clean
            assert trace.label in (0, 1)
            assert len(trace.hidden_states) == 31 and len(trace.attentions) == 30
