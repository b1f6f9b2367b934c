"""Extraction runs that must stop with one line, before the model loads where possible, and
resumes that must never mix data or labels. (Audit reproductions, docs/RELIABILITY.md.)"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from extraction.config import ExtractionConfig
from extraction.store import TraceStore
from tests.helpers import TRUTHFULQA, one_line_error, run_extraction, tiny_args


def questions_file(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"question_id": qid, "question": text, "answer": {"aliases": ["Paris"]}})
        for qid, text in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_run(model_dir: Path, out: Path, dataset_file: Path, *extra) -> list:
    return [
        "--model", model_dir, "--dataset-file", dataset_file, "--output-dir", out,
        "--num-beams", 1, "--max-new-tokens", 3, *extra,
    ]  # fmt: skip


# --- checked before the model loads (an unknown model would fail later, so the option is first)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--label-method", "exact"], "--label_method 'exact' is not one of alias_match"),
        (["--dataset", "../../../../escaped"], "--dataset '../../../../escaped' cannot name files"),
        (["--dataset", "a/b"], "cannot name files"),
        (["--quantization", "3bit"], "--quantization '3bit' is not one of"),
        (["--torch-dtype", "float8"], "--torch_dtype 'float8' is not one of"),
        (["--shard-size", "0"], "--shard_size must be at least 1"),
        (["--shard-max-mb", "-1"], "--shard_max_mb must be at least 1"),
        (["--layers", "-1"], "block indices start at 0"),
    ],
)
def test_options_are_checked_before_the_model_loads(capsys, tmp_path, args, expected):
    err = one_line_error(capsys, "--model", "no_such_model", "--output-dir", tmp_path / "s", *args)
    assert expected in err
    assert not (tmp_path / "s").exists()


def test_a_dataset_file_stem_that_cannot_name_files(capsys, tmp_path):
    bad = questions_file(tmp_path / "..hidden.jsonl", [("a", "Capital of France?")])
    assert "cannot name files" in one_line_error(capsys, "--dataset-file", bad)


def test_escaping_dataset_name_creates_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    one_line_error(capsys, "--dataset", "../../escaped", "--num-samples", "1")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["work"]


def test_duplicate_question_ids_are_refused_with_their_rows(capsys, tmp_path):
    rows = [("a", "One?"), ("b", "Two?"), ("a", "Three?"), ("c", "Four?"), ("b", "Five?")]
    err = one_line_error(
        capsys, "--model", "no_such_model",
        "--dataset-file", questions_file(tmp_path / "q.jsonl", rows),
        "--output-dir", tmp_path / "s",
    )  # fmt: skip
    assert "repeats question ids: 'a' in rows 0, 2; 'b' in rows 1, 4" in err
    assert not (tmp_path / "s").exists()


def test_output_dir_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("a file")
    err = one_line_error(capsys, "--model", "no_such_model", "--output-dir", target / "store")
    assert f"{target} is a file, not a directory" in err


def test_read_only_output_dir(capsys, tmp_path, monkeypatch):
    """Root ignores permission bits and no read-only mount is at hand: the kernel's answer for
    the folder is what is replaced (os.access, as on a read-only file system)."""
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != tmp_path and real_access(path, mode)
    )
    err = one_line_error(capsys, "--model", "no_such_model", "--output-dir", tmp_path / "s")
    assert f"cannot write in {tmp_path} (read-only or no permission)" in err


def test_disk_full_is_one_line_and_the_store_resumes(capsys, tiny_model_dir, tmp_path, monkeypatch):
    """ENOSPC while the second batch is written: one line, the first batch kept, a rerun ends it."""
    from extraction.store import writer

    out = tmp_path / "store"
    args = tiny_args(tiny_model_dir, out, n=6)
    real_save, calls = writer.save_file, []

    def full_disk(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) >= 2:  # the disk stays full
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(writer, "save_file", full_disk)
    err = one_line_error(capsys, *args)
    assert "No space left on device" in err and "rerun the same command" in err
    assert len(TraceStore(out)) == 3  # the first batch (of 3) is on disk and indexed
    monkeypatch.setattr(writer, "save_file", real_save)
    assert run_extraction(*args) == 0
    store = TraceStore(out)
    assert len(store) == 6 and store.verify() == {}


# --- resume never mixes data or labels ------------------------------------------------------


def test_resume_with_another_label_method_is_refused(capsys, tiny_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    model = TraceStore(store).manifest.settings.model
    args = [a if a != tiny_store else store for a in tiny_args(Path(model), store)]
    err = one_line_error(capsys, *args, "--label-method", "truthfulqa_diff")
    assert "labelled" in err and "'alias_match'" in err and "'truthfulqa_diff'" in err
    assert "--label_method alias_match" in err


def test_resume_compares_the_resolved_dataset_file(capsys, tiny_model_dir, tmp_path, monkeypatch):
    """The same relative path from another folder is another file: refused. The same file by
    its absolute path is the same data: resumed. The same path with other questions: refused."""
    first = questions_file(tmp_path / "one" / "q.jsonl", [("a", "Capital of France?")])
    questions_file(tmp_path / "two" / "q.jsonl", [("a", "Capital of Spain?")])
    out = tmp_path / "store"
    monkeypatch.chdir(first.parent)
    assert run_extraction(*tiny_run(tiny_model_dir, out, Path("q.jsonl"))) == 0
    monkeypatch.chdir(tmp_path / "two")
    err = one_line_error(capsys, *tiny_run(tiny_model_dir, out, Path("q.jsonl")))
    assert "other settings (dataset_file:" in err and str(first) in err
    assert run_extraction(*tiny_run(tiny_model_dir, out, first)) == 0
    questions_file(first, [("a", "Capital of Italy?")])
    err = one_line_error(capsys, *tiny_run(tiny_model_dir, out, first))
    assert "already holds question 'a' with another text" in err
    assert [row.question for row in TraceStore(out).rows.values()] == ["Capital of France?"]


# --- what a user sees -----------------------------------------------------------------------


def test_inspect_of_an_interrupted_store_counts_the_missing_questions(capsys, tiny_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    index = store / "index.jsonl"
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:2]))
    assert run_extraction("inspect", store) == 0
    out = capsys.readouterr().out
    assert "INCOMPLETE: 4 of 6 questions missing" in out and "DONE" not in out
    assert "Label method: alias_match (2)" in out


@pytest.mark.slow  # reads ../shared/data
def test_expected_files_count_the_byte_cap(shared_data, tiny_model_dir):
    """All 817 TruthfulQA questions with SmolLM2's sizes (30 blocks, 9 heads, hidden 576): the
    500-trace count says 2 files, the 1 GiB cap several more."""
    from transformers import AutoTokenizer

    from extraction.questions import load_questions
    from extraction.run import expected_files

    questions = load_questions("truthfulqa", str(TRUTHFULQA))
    loaded = SimpleNamespace(
        tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir), num_heads=9, hidden_size=576
    )
    fewest, most = expected_files(questions, loaded, ExtractionConfig(), blocks=30)
    assert fewest == 2 and most > 3
