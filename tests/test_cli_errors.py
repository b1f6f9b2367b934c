"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.runner import describe_os_error
from tests.helpers import one_line_error


def test_unknown_model(capsys, tmp_path):
    err = one_line_error(capsys, "--model", "no_such_model", "--output-dir", tmp_path / "s")
    assert "unknown model 'no_such_model'" in err and "smollm2_135M" in err
    assert not (tmp_path / "s").exists()


def test_malformed_dataset_file(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?"}\n{not json\n')
    assert "cannot read" in one_line_error(capsys, "--dataset-file", bad)


def test_file_without_question_field(capsys, tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"prompt": "What?"}) + "\n")
    assert "no 'question' field" in one_line_error(capsys, "--dataset-file", bad)


def test_empty_question(capsys, tmp_path):
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"question": "Fine?"}) + "\n" + json.dumps({"question": "  "}) + "\n")
    assert "row 1" in one_line_error(capsys, "--dataset-file", bad)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dataset", "squad"], "unknown dataset 'squad'"),
        (["--dataset-file", "missing.jsonl"], "does not exist"),
        (["--dataset-file", "questions.txt"], "does not exist"),
        (["--num-samples", "0"], "--num_samples must be at least 1"),
        (["--config", "missing.yaml"], f"config file {Path('missing.yaml').resolve()} does not"),
    ],
)
def test_bad_arguments(capsys, args, expected):
    assert expected in one_line_error(capsys, *args)


def test_unknown_config_key(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: smollm2_135M\nnum_sample: 3\n")
    assert "unknown setting 'num_sample'" in one_line_error(capsys, "--config", config)


def test_4bit_on_cpu_is_a_clear_error(capsys, tiny_model_dir, tmp_path):
    err = one_line_error(
        capsys, "--model", tiny_model_dir, "--quantization", "4bit", "--dataset", "demo",
        "--output-dir", tmp_path / "s",
    )  # fmt: skip
    assert "needs a CUDA GPU" in err


def test_settings_change_is_refused_without_overwrite(capsys, tiny_store):
    err = one_line_error(capsys, "--model", "smollm2_135M", "--output-dir", tiny_store)
    assert "other settings" in err and "--overwrite" in err


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(28, "No space left on device", "/data/x.safetensors"),
            "No space left on device: /data/x.safetensors; free some space",
        ),
        (OSError(28, "No space left on device"), "No space left on device; free some space"),
    ],
)
def test_a_file_system_error_reads_as_one_sentence(error, expected):
    assert describe_os_error(error).startswith(expected)
