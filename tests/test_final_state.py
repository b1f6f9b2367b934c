"""The stored final state is the real one: causal attention rows, equal to an independent eager
pass, batched equal to unbatched, and tokens aligned with states."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from extraction.final_state import eager_attention, final_state_pass
from extraction.prompts import SEED_PROMPT
from extraction.store import TraceStore
from extraction.store.layout import pack_causal
from extraction.synthetic import SyntheticShape, synthetic_trace
from tests.helpers import (
    FP16_TOL,
    check_attention_is_causal_softmax,
    check_real_store,
    check_store_equals_eager_pass,
)


def test_attention_shape_causal_and_rows_sum_to_one(tiny_store):
    check_attention_is_causal_softmax(TraceStore(tiny_store))


def test_store_equals_an_independent_eager_forward_pass(tiny_store, tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    check_store_equals_eager_pass(TraceStore(tiny_store), model, FP16_TOL)


def test_batched_pass_equals_unbatched(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    sequences = [torch.randint(5, 1000, (n,)).tolist() for n in (7, 19, 12)]
    prompts = [4, 10, 6]
    blocks = list(range(model.config.num_hidden_layers))
    batched = final_state_pass(model, sequences, prompts, 2, blocks, storage_dtype=torch.float32)
    for seq, n_prompt, together in zip(sequences, prompts, batched, strict=True):
        (alone,) = final_state_pass(
            model, [seq], [n_prompt], 2, blocks, storage_dtype=torch.float32
        )
        for block in blocks:
            torch.testing.assert_close(together.attentions[block], alone.attentions[block])
        for index in alone.hidden_states:
            torch.testing.assert_close(together.hidden_states[index], alone.hidden_states[index])
        torch.testing.assert_close(together.token_logprobs, alone.token_logprobs)
        assert together.token_logprobs.shape == (len(seq) - n_prompt,)
    assert model.config._attn_implementation == "sdpa"  # switched back after the pass


def forward_hooks(model) -> dict[str, list[int]]:
    return {name: list(module._forward_hooks) for name, module in model.named_modules()}


def test_pass_packs_kept_blocks_only_and_leaves_the_model_clean(tiny_model_dir):
    """Kept blocks come back packed in the storage dtype, equal to the unbatched eager forward;
    unkept blocks not at all; no hook stays behind, also when the forward fails midway."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(2)
    sequences = [torch.randint(5, 1000, (n,)).tolist() for n in (9, 15)]
    final_state_pass(model, sequences, [3, 5], 2, [0], storage_dtype=torch.float16)
    hooks = forward_hooks(model)  # after a first pass: transformers installs its own lazily

    states = final_state_pass(model, sequences, [3, 5], 2, [1], storage_dtype=torch.float16)
    assert forward_hooks(model) == hooks
    for seq, state in zip(sequences, states, strict=True):
        assert set(state.attentions) == {1} and set(state.hidden_states) == {0, 2}
        with torch.no_grad(), eager_attention(model):
            out = model(torch.tensor([seq]), output_attentions=True)
        reference = pack_causal(out.attentions[1][0])
        assert state.attentions[1].dtype == torch.float16
        assert state.attentions[1].shape == (4, len(seq) * (len(seq) + 1) // 2)
        torch.testing.assert_close(state.attentions[1].float(), reference, atol=FP16_TOL, rtol=0)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    model.model.layers[1].mlp.forward = broken
    with pytest.raises(RuntimeError, match="out of memory"):
        final_state_pass(model, sequences, [3, 5], 2, [0, 1], storage_dtype=torch.float16)
    assert forward_hooks(model) == hooks
    assert model.config._attn_implementation == "sdpa"


def test_a_trace_holding_packed_attention_answers_full_maps():
    """What the final pass hands the writer (packed lower triangles) reads as ``[heads, T, T]``."""
    full = synthetic_trace("q0", SyntheticShape(), answer_tokens=4, label=0, seed=3)
    packed = replace(full, attentions={b: pack_causal(a) for b, a in full.attentions.items()})
    for block in full.attentions:
        assert torch.equal(packed.attention(block), full.attention(block))
    for kept, reference in zip(
        packed.seed_record()["attentions"], full.seed_record()["attentions"], strict=True
    ):
        assert (kept == reference).all()


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
    sizes = {"num_layers": 30, "num_heads": 9, "hidden_size": 576, "vocab_size": 49152}
    for path in (smollm2_triviaqa_store, smollm2_truthfulqa_store):
        store = TraceStore(path)
        check_real_store(store, 20, sizes | {"architecture": "LlamaForCausalLM"})
        for trace in store:
            if not trace.generated_answer_clean:  # SmolLM2 sometimes answers with EOS alone
                assert trace.answer_end == "eos" and trace.n_answer_tokens == 1
