"""Run options that change what is stored: --layers, --chat-template, --max-total-tokens."""

from __future__ import annotations

from transformers import AutoTokenizer

from extraction.store import TraceStore
from tests.conftest import run_extraction, tiny_args


def test_layer_subset_and_chat_template(tiny_model_dir, tmp_path):
    out = tmp_path / "store"
    args = tiny_args(tiny_model_dir, out, n=2)
    assert run_extraction(*args, "--layers", 1, "--chat-template", "--dtype", "float32") == 0
    store = TraceStore(out)
    assert store.manifest.settings.attention_layers == (1,)
    assert store.manifest.settings.hidden_state_layers == (0, 2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for trace in store:
        assert sorted(trace.attentions) == [1] and sorted(trace.hidden_states) == [0, 2]
        assert trace.attentions[1].dtype == trace.hidden_states[2].dtype
        prompt = tokenizer.decode(trace.tokens[: trace.n_prompt_tokens])
        assert prompt.startswith("<|im_start|>") and trace.question in prompt
        assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_too_long_questions_are_recorded_and_the_run_goes_on(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "store"
    assert run_extraction(*tiny_args(tiny_model_dir, out, n=6), "--max-total-tokens", 31) == 0
    store = TraceStore(out)
    assert len(store) + len(store.errors) == 6
    assert store.errors and len(store) > 0
    for row in store.errors:
        assert row.error.startswith("too long:") and "--max_total_tokens 31" in row.error
    assert f"Total errors: {len(store.errors)}" in capsys.readouterr().out


def test_max_total_tokens_beyond_the_models_positions(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "store"
    args = tiny_args(tiny_model_dir, out, n=2)
    assert run_extraction(*args, "--max-total-tokens", 4096) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --max_total_tokens 4096 is more than") and "2048 positions" in err
    assert not out.exists()
