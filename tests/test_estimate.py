"""``python -m extraction estimate``: the byte arithmetic against stores really written, the
registry's shapes without downloads, and one-line errors before anything loads."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import struct
from pathlib import Path

import docstring_parser
import pytest

from extraction.cli import main
from extraction.estimate import (
    REFERENCE,
    LengthProfile,
    StoreLayout,
    density_model,
    reference_profile,
    store_bytes,
    trace_bytes,
)
from extraction.estimate_command import EstimateConfig
from extraction.model_shapes import model_shape
from extraction.store import TraceStore
from extraction.synthetic import SyntheticShape, write_synthetic_store
from tests.helpers import assert_one_line_errors

TENSOR_PARTS = ("attention", "hidden_states", "tokens_and_answer_stats")


def shard_headers(store: TraceStore) -> dict[str, dict]:
    """Every tensor's safetensors header entry (dtype, shape, data offsets), of every shard."""
    entries = {}
    for path in store.shard_files:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        header.pop("__metadata__", None)
        entries.update(header)
    return entries


def tensor_bytes_on_disk(store: TraceStore) -> int:
    return sum(
        end - start for start, end in (e["data_offsets"] for e in shard_headers(store).values())
    )


def store_files_bytes(store: TraceStore) -> int:
    return sum(path.stat().st_size for path in store.shard_files) + (
        (store.root / "index.jsonl").stat().st_size
    )


def profile_of(store: TraceStore) -> LengthProfile:
    rows = [store.rows[qid] for qid in store.question_ids]
    return LengthProfile(
        tuple((row.n_prompt_tokens, row.n_answer_tokens) for row in rows), store.root.name
    )


def test_tensor_bytes_equal_a_written_store_and_files_are_close(tmp_path):
    shape = SyntheticShape(blocks=4, heads=8, hidden=256, prompt_tokens=40, answer_tokens=(9, 30))
    store = TraceStore(write_synthetic_store(tmp_path / "s", 10, shape, max_traces_per_shard=4))
    layout = StoreLayout(blocks=4, heads=8, hidden_size=256, dtype_bytes=2)

    estimate = store_bytes(layout, profile_of(store), len(store))

    assert sum(estimate[part] for part in TENSOR_PARTS) == tensor_bytes_on_disk(store)
    assert sum(estimate.values()) == pytest.approx(store_files_bytes(store), rel=0.02)


def test_a_trace_of_llama2_7b_at_100_tokens():
    shape = model_shape("llama2_chat_7B")
    layout = StoreLayout(shape.num_layers, shape.num_heads, shape.hidden_size, dtype_bytes=2)

    parts = trace_bytes(layout, prompt=70, answer=30)

    assert parts["attention"] == 32 * 32 * (100 * 101 // 2) * 2
    assert parts["hidden_states"] == 33 * 100 * 4096 * 2
    assert parts["tokens_and_answer_stats"] == 4 * 100 + 8 * 30


def test_registry_shapes_without_downloading():
    llama, qwen = model_shape("llama2_chat_7B"), model_shape("qwen_2.5_7B")

    assert (llama.num_layers, llama.num_heads, llama.hidden_size) == (32, 32, 4096)
    assert llama.vocab_size == 32000
    assert llama.parameters == 6_738_415_616  # the published count
    assert (qwen.num_layers, qwen.num_heads, qwen.num_kv_heads) == (28, 28, 4)
    assert model_shape("llama3.1_8B_4bit").prequantized


def test_sparse_density_falls_with_length_and_threshold_and_rises_with_heads():
    loose, strict = density_model(0.01), density_model(0.05)

    assert loose.fraction(40, 9) > loose.fraction(200, 9) > 0
    assert strict.fraction(40, 9) < loose.fraction(40, 9)
    assert loose.fraction(100, 32) > loose.fraction(100, 9)
    assert 0 < loose.fraction(10_000, 32) <= 1


@pytest.mark.parametrize(
    ("store", "heads", "tolerance"), [("smollm2_demo", 9, 0.01), ("gemma3_demo", 4, 0.06)]
)
def test_the_density_model_reproduces_the_measured_stores(store, heads, tolerance):
    """Over a store's own lengths, the kept fraction is what benchmarks/attention_density.py
    counted: closely on SmolLM2 (fitted on it), within ~5 points on Gemma-3 (not fitted)."""
    measured = json.loads(REFERENCE.read_text())["stores"]
    (reference,) = [entry for entry in measured if entry["store"] == store]
    lengths = [prompt + answer for prompt, answer in reference["lengths"]]
    positions = [t * (t + 1) // 2 for t in lengths]
    for w in (0.01, 0.05):
        model = density_model(w)
        kept = sum(model.fraction(t, heads) * p for t, p in zip(lengths, positions, strict=True))
        assert kept / sum(positions) == pytest.approx(
            reference["density"][str(w)]["fraction"], abs=tolerance
        )


def test_sparse_bytes_shrink_the_attention_only():
    profile = reference_profile().scaled_to(100)
    dense = store_bytes(StoreLayout(32, 32, 4096, 2), profile, 1000)
    sparse = store_bytes(StoreLayout(32, 32, 4096, 2, density_model(0.05)), profile, 1000)

    assert sparse["attention"] < 0.6 * dense["attention"]
    assert sparse["hidden_states"] == dense["hidden_states"]


def test_scaling_a_profile_keeps_its_spread():
    profile = reference_profile()
    scaled = profile.scaled_to(2 * profile.mean_tokens)

    assert scaled.mean_tokens == pytest.approx(2 * profile.mean_tokens, rel=0.02)
    assert scaled.longest[1] == pytest.approx(2 * profile.longest[1], abs=2)
    measured = LengthProfile(((10, 4), (12, 6)), "a timed run")
    like = profile.with_answers_like(measured)
    assert like.mean_answer == pytest.approx(5, abs=0.1)
    assert like.mean_prompt == profile.mean_prompt


def test_estimate_prints_bytes_and_memory_of_a_hub_model(capsys):
    args = "estimate --model llama2_chat_7B --dataset triviaqa --num_samples 10000"
    assert main([*args.split(), "--mean_tokens", "100", "--device", "cuda"]) == 0
    out = capsys.readouterr().out

    assert "Questions: 10000" in out and "mean 99" in out
    assert "Bytes on disk: 3" in out  # ~38 MB a trace dense
    assert "weights (4-bit NF4)" in out and "Peak memory on CUDA" in out
    assert "Time: not measured (the model is not on this machine)" in out


def test_several_generations_multiply_the_traces(capsys):
    args = "estimate --model llama2_chat_7B --dataset triviaqa --num_samples 1000 --mean_tokens 100"
    assert main(args.split()) == 0
    one = capsys.readouterr().out
    assert main([*args.split(), "--num_generations", "5", "--do_sample"]) == 0
    five = capsys.readouterr().out

    def total_and_per_trace(out: str) -> tuple[str, str]:
        line = next(line for line in out.splitlines() if line.startswith("Bytes on disk:"))
        total, per_trace = line.removeprefix("Bytes on disk: ").split(" (")
        return total, per_trace

    assert "Generations per question: 5 (5000 traces)" in five
    assert total_and_per_trace(one)[1] == total_and_per_trace(five)[1]
    assert float(total_and_per_trace(five)[0].split()[0]) == pytest.approx(
        5 * float(total_and_per_trace(one)[0].split()[0]), rel=0.01
    )


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything reads a model's config or weights."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("extraction.estimate_command.model_shape", refuse)
    monkeypatch.setattr("extraction.run.load_model", refuse)


def test_bad_options_are_one_line_before_any_model_loads(no_model_loads, capsys):
    assert_one_line_errors(
        main,
        [
            "estimate --attention_format sparse",
            "estimate --attention_format packed",
            "estimate --min_attention 0.01",
            "estimate --attention_format sparse --min_attention 1.5",
            "estimate --attention_format sparse --min_attention 0.01 --attention_density 2",
            "estimate --mean_tokens 1",
            "estimate --timed_questions -1",
            "estimate --dtype float8",
            "estimate --num_samples 0",
            "estimate --dataset triviaqa",
            "estimate --mean_tokens many",
            "estimate --attention_format sparse --min_attention 0.5",
        ],
        capsys,
    )


def test_an_unknown_hub_model_says_what_to_pass(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["estimate", "--model", "someone/not-a-model", "--num_samples", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no shapes known for 'someone/not-a-model'" in err and "local model folder" in err


def test_a_threshold_outside_the_measured_ones_asks_for_a_density(capsys):
    args = "estimate --model llama2_chat_7B --num_samples 10 --attention_format sparse"
    assert main([*args.split(), "--min_attention", "0.5"]) == 2
    assert "--attention_density" in capsys.readouterr().err


def test_a_local_model_is_timed_and_its_store_matches_the_arithmetic(tiny_model_dir, capsys):
    args = ["estimate", "--model", str(tiny_model_dir), "--num_samples", "40"]
    args += ["--num_beams", "2", "--max_new_tokens", "6", "--batch_size", "3"]
    assert main([*args, "--timed_questions", "3"]) == 0
    out = capsys.readouterr().out

    assert "Questions: 40" in out and "prompts measured with the model's tokenizer" in out
    assert "s a question, measured on 3 questions" in out
    assert "scaled" in out and "to the timed run's 3 answers" in out
    written, computed = _timed_bytes(out)
    assert computed == pytest.approx(written, rel=0.1)


def _timed_bytes(out: str) -> tuple[float, float]:
    """The timed run's bytes a trace on disk, and the arithmetic's for the same lengths."""
    found = re.search(r"wrote ([\d.]+) (\w+) a trace; the arithmetic gives ([\d.]+) (\w+)", out)
    units = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
    written, written_unit, computed, computed_unit = found.groups()
    return float(written) * units[written_unit], float(computed) * units[computed_unit]


@pytest.mark.slow
def test_packaged_smollm2_timed_run_matches_the_arithmetic(capsys):
    assert main(["estimate", "--num_samples", "350", "--timed_questions", "8"]) == 0
    out = capsys.readouterr().out

    assert "Time: " in out and "measured on 8 questions" in out
    written, computed = _timed_bytes(out)
    assert computed == pytest.approx(written, rel=0.02)


def test_the_reference_profile_is_the_bundled_demo_run():
    profile = reference_profile()
    assert len(profile.pairs) == 350
    assert 35 < profile.mean_tokens < 45
    assert Path("extraction/data/estimate_reference.json").exists()


def test_a_run_config_sizes_its_run(capsys):
    """``--config`` of an extraction run works unchanged (the packaged model: shapes from its
    config, prompts tokenized; no timed run)."""
    args = ["estimate", "--config", "configs/extraction/default.yaml", "--timed_questions", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Questions: 350" in out and "350 prompts measured with the model's tokenizer" in out
    assert "Bytes on disk: 673" in out  # the demo store written with these settings: 673.05 MB
    assert "Time: not measured (--timed_questions 0)" in out


def test_sparse_tensor_bytes_match_a_written_sparse_store(tmp_path):
    """With the store's own kept fraction, the sparse layout's bytes (values, int16 columns,
    row offsets) are those the writer wrote (``--attention_format sparse``, issue 11)."""
    sparse = pytest.importorskip("extraction.store.sparse")
    shape = SyntheticShape(blocks=4, heads=8, hidden=256, prompt_tokens=40, answer_tokens=(9, 30))
    root = tmp_path / "sparse"
    store = TraceStore(write_synthetic_store(root, 10, shape, min_attention=0.05))
    columns = [e["shape"][0] for key, e in shard_headers(store).items() if sparse.COLUMNS in key]
    lengths = [store.row(qid).seq_len for qid in store.question_ids]
    positions = shape.blocks * sum(t * (t + 1) // 2 for t in lengths)
    kept = sum(columns)
    layout = StoreLayout(
        blocks=4, heads=8, hidden_size=256, dtype_bytes=2, density=kept / positions
    )

    estimate = store_bytes(layout, profile_of(store), len(store))

    written = tensor_bytes_on_disk(store)
    assert sum(estimate[part] for part in TENSOR_PARTS) == pytest.approx(written, rel=0.01)
    assert sum(estimate.values()) == pytest.approx(store_files_bytes(store), rel=0.02)


def test_every_estimate_option_is_documented_once_and_accepted(capsys):
    """The run's options and the estimate's own, each documented once (the run's docstring plus
    the estimate's), in the dialect of every command."""
    names = [field.name for field in dataclasses.fields(EstimateConfig)]
    documented = docstring_parser.parse(inspect.getdoc(EstimateConfig)).params
    assert [param.arg_name for param in documented] == names
    assert {"mean_tokens", "timed_questions", "attention_format", "min_attention"} <= set(names)
    assert main(["estimate", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert all(f"--{name}" in help_text for name in names)
