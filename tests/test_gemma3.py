"""Gemma-3-270M, the second real model: its architecture differs from SmolLM2's where extraction
can go wrong (one key/value head shared by 4 query heads, sliding-window layers between global
ones, a 262k vocabulary, hidden states past float16's range). The stored final state equals an
independent unbatched eager forward pass, and the whole pipeline runs on its store."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from extraction.final_state import final_state_pass
from extraction.offline_model import converted_checkpoint
from extraction.store import TraceStore
from extraction.store.layout import pack_causal, unpack_causal
from graphs.cli import main as graphs_main
from tests.helpers import (
    TRUTHFULQA,
    best_checkpoint,
    check_real_store,
    check_report,
    check_store_equals_eager_pass,
    require_shared_data,
    strs,
    write_config,
)
from training.cli import main as training_main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SLIDING_WINDOW = 512


@pytest.fixture(scope="module")
def gemma():
    """The real model as ``transformers`` loads it, eager attention, float32: the reference."""
    path = converted_checkpoint("gemma3_270M")
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(path)


def test_architecture(gemma):
    config = gemma[0].config
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (
        18,
        4,
        640,
    )
    assert config.num_key_value_heads == 1 and config.vocab_size == 262144
    assert config.sliding_window == SLIDING_WINDOW
    assert config.layer_types.count("full_attention") == 3  # blocks 5, 11, 17; the rest slide


def test_store_traces(gemma3_demo_store):
    store = TraceStore(gemma3_demo_store)
    sizes = {"num_layers": 18, "num_heads": 4, "hidden_size": 640, "vocab_size": 262144}
    check_real_store(store, 20, sizes | {"architecture": "Gemma3ForCausalLM"})
    ends = [trace.answer_end for trace in store]
    # A base model: never EOS; it goes on with "\n\nQuestion: ...", cut at the line break.
    assert ends.count("stop_string") >= 15 and "eos" not in ends
    for trace in store:
        assert trace.tokens[0] == 2  # <bos>: Gemma's output is noise without it
    # Past float16's range (65504): why this store is bfloat16.
    assert max(float(t.hidden_states[12].float().abs().max()) for t in store) > 65504


def test_store_equals_an_independent_unbatched_eager_pass(gemma3_demo_store, gemma):
    """Each stored trace (batched with 7 others, left-padded) against ``model(tokens)`` alone,
    to bfloat16's precision (the storage dtype)."""
    store = TraceStore(gemma3_demo_store)
    check_store_equals_eager_pass(store, gemma[0], torch.finfo(torch.bfloat16).eps)


def long_prompt(tokenizer, n_tokens: int) -> list[int]:
    """Real TruthfulQA questions in the seed's pattern, until the prompt passes ``n_tokens``."""
    require_shared_data()
    lines = []
    with TRUTHFULQA.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            lines.append(f"Question: {row['Question']}\nAnswer: {row['Best Answer']}\n")
            ids = tokenizer("".join(lines))["input_ids"]
            if len(ids) > n_tokens:
                return ids
    raise AssertionError("TruthfulQA is shorter than expected")


def test_sliding_window_and_batching_in_the_final_state_pass(gemma):
    """A 600-token sequence (past the 512-token window) batched with a short one: every block's
    attention and hidden states equal the unbatched eager pass, the sliding blocks give exactly
    zero weight beyond the window and the global ones do not."""
    model, tokenizer = gemma
    long = long_prompt(tokenizer, 600)
    short = long[:40]
    blocks = list(range(model.config.num_hidden_layers))
    batched = final_state_pass(
        model, [long, short], [590, 30], tokenizer.pad_token_id, blocks, storage_dtype=torch.float32
    )
    for seq, state in zip((long, short), batched, strict=True):
        with torch.no_grad():
            out = model(torch.tensor([seq]), output_attentions=True, output_hidden_states=True)
        for block in blocks:
            torch.testing.assert_close(
                state.attentions[block], pack_causal(out.attentions[block][0]), atol=1e-5, rtol=1e-4
            )
        for index, hidden in state.hidden_states.items():
            # Float32 rounding in a residual stream of ~1e5 (padding or the window going wrong
            # would differ by the values themselves).
            reference = out.hidden_states[index][0]
            atol = 1e-4 * float(reference.abs().max())
            torch.testing.assert_close(hidden, reference, atol=atol, rtol=0)
    attentions = {b: unpack_causal(a, len(long)) for b, a in batched[0].attentions.items()}
    last = len(long) - 1
    beyond = slice(0, last - SLIDING_WINDOW + 1)  # keys at distance >= 512 from the last token
    for block, kind in enumerate(model.config.layer_types):
        row = attentions[block][:, last]
        if kind == "sliding_attention":
            assert torch.count_nonzero(row[:, beyond]) == 0, block
            assert bool((row[:, last - SLIDING_WINDOW + 1 :].sum(-1) > 0.999).all()), block
        else:
            assert bool((row[:, beyond].sum(-1) > 0).all()), block


def test_pipeline_on_a_gemma3_store(gemma3_demo_store, tmp_path, capsys):
    """graphs build/inspect → training fit → test → baselines, on block 9 of 18."""
    config = write_config(tmp_path, gemma3_demo_store, block=9)
    assert graphs_main(["build", "--config", str(config)]) == 0
    assert "20 graphs" in capsys.readouterr().out
    assert graphs_main(["inspect", str(tmp_path / "graphs")]) == 0
    assert "mean degree" in capsys.readouterr().out

    args = [
        "--config", Path(__file__).resolve().parents[1] / "configs" / "training" / "gcn.yaml",
        "--data.traces", gemma3_demo_store, "--data.root", tmp_path / "train_graphs",
        "--data.graph.block", 9, "--data.split_ratios", "[0.4,0.2,0.4]",
        "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_epochs", 5,
        "--trainer.log_every_n_steps", 1, "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
    assert training_main(strs(["fit", *args])) == 0
    checkpoint = best_checkpoint(tmp_path)
    assert training_main(strs(["test", *args, "--ckpt_path", checkpoint])) == 0
    report_line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("test report:")
    )
    report = check_report(Path(report_line.split(": ", 1)[1]))
    assert report["data"]["model"] == "gemma3_270M"
    out = tmp_path / "baselines"
    assert training_main(strs(["baselines", "--output", out, *args])) == 0
    table = json.loads((out / "baselines.json").read_text())
    assert {"mean_logprob", "max_entropy", "probe_layer9"} <= set(table["detectors"])
