"""Judgement files: reading, matching by question id and answer hash, ``label --from-file``, and
the label source a detector run trains on."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from common import UserError
from extraction.store import IndexRow, TraceStore
from extraction.store.judgements import (
    PACKAGED_DIR,
    answer_sha256,
    label_source,
    match_judgements,
    packaged_judgements,
    read_judgements,
)
from tests.helpers import judgement, run_extraction, write_jsonl


@pytest.fixture
def store_copy(tiny_store, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(tiny_store, copy)
    return copy


def test_answer_hash_is_sha256_of_the_utf8_text():
    assert answer_sha256("Canberra") == hashlib.sha256(b"Canberra").hexdigest()
    assert answer_sha256("café") == hashlib.sha256("café".encode()).hexdigest()
    assert answer_sha256("Canberra.") != answer_sha256("Canberra")


def test_read_judgements(tmp_path):
    path = write_jsonl(tmp_path / "j.jsonl", [judgement("q1", "a", 1), judgement("q2", "b", 0)])
    rows = read_judgements(path)
    assert [(j.question_id, j.label, j.method) for j in rows] == [
        ("q1", 1, "external:panel"),
        ("q2", 0, "external:panel"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", r"line 1 is not JSON"),
        ('["a list"]\n', r"line 1 is not a JSON object"),
        (json.dumps({"question_id": "q1"}) + "\n", r"line 1 lacks model, answer_sha256"),
        (json.dumps(judgement("q1", "a", 2)) + "\n", r"label must be 1 \(hallucinated\) or 0"),
        (json.dumps(judgement("q1", "a", True)) + "\n", r"label must be"),
        (
            json.dumps(judgement("q1", "a", 1) | {"answer_sha256": "abc"}) + "\n",
            r"answer_sha256 must be 64 lowercase hex",
        ),
        (json.dumps(judgement("q1", "a", 1, judge="")) + "\n", r"judge must be a non-empty"),
        (
            json.dumps(judgement("q1", "a", 1)) + "\n" + json.dumps(judgement("q1", "a", 0)),
            r"q1 is judged both 0 and 1",
        ),
        (
            json.dumps(judgement("q1", "a", 1) | {"answer": "b"}) + "\n",
            r"answer_sha256 is not the sha256 of its answer text",
        ),
        ("\n\n", r"holds no judgements"),
    ],
)
def test_bad_judgement_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as err:
        read_judgements(path)
    assert "\n" not in str(err.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_judgements(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_judgements(tmp_path / "latin1.jsonl")


def test_matching_needs_the_question_and_the_same_answer_text(tmp_path):
    answers = {"q1": ("ok", "Canberra"), "q2": ("ok", "Sydney"), "q3": ("error", None)}
    answers["q4"] = ("ok", "Perth")
    rows = {
        qid: IndexRow(qid, status, generated_answer_clean=answer)
        for qid, (status, answer) in answers.items()
    }
    judgements = [
        judgement("q1", "Canberra", 0),
        judgement("q2", "Sydney is the capital", 1),  # another answer to q2
        judgement("q3", "", 0),
        judgement("q9", "Canberra", 0),
    ]
    result = match_judgements(rows, read_judgements(write_jsonl(tmp_path / "j.jsonl", judgements)))
    assert {qid: label.label for qid, label in result.labels.items()} == {"q1": 0}
    assert result.labels["q1"].method == "external:panel"
    why = {j.question_id: reason for j, reason in result.unmatched}
    assert why == {
        "q2": "a different answer text (hash differs)",
        "q3": "the store has no answer for it (an error row)",
        "q9": "no such question in the store",
    }
    assert result.unjudged == ["q2", "q4"]
    report = "\n".join(result.report())
    assert "3 judgements matched no answer" in report
    assert "2 answers have no judgement: q2, q4" in report


def test_label_from_file_imports_matched_judgements(store_copy, tmp_path, capsys):
    store = TraceStore(store_copy)
    first, second, *rest = store.question_ids
    answers = {qid: store.rows[qid].generated_answer_clean for qid in store.question_ids}
    path = write_jsonl(
        tmp_path / "judged.jsonl",
        [
            judgement(first, answers[first], 0, judge="alice"),
            judgement(second, answers[second] + " (edited)", 0),  # not the stored answer
            *(judgement(qid, answers[qid], 1) for qid in rest),
            judgement("triviaqa_999", "x", 1),
        ],
    )
    shards = {p.name: p.read_bytes() for p in store_copy.glob("*.safetensors")}
    assert run_extraction("label", store_copy, "--from-file", path) == 0
    out = capsys.readouterr().out
    assert "2 judgements matched no answer of the store" in out
    assert f"{second}: a different answer text (hash differs)" in out
    assert "triviaqa_999: no such question in the store" in out
    assert f"1 answers have no judgement: {second}" in out
    assert f"{len(rest)} hallucinated, 1 correct, 1 without a label" in out
    rows = TraceStore(store_copy).rows
    assert (rows[first].label, rows[first].label_method) == (0, "external:alice")
    assert rows[first].label_score is None
    assert (rows[second].label, rows[second].label_method) == (None, "none")
    assert all(rows[qid].label_method == "external:panel" for qid in rest)
    assert shards == {p.name: p.read_bytes() for p in store_copy.glob("*.safetensors")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-file", "x.jsonl", "--method", "alias_match"], "either --method or --from_file"),
        (["--method", "llm_judge"], "--method llm_judge needs --judge_model"),
        (["--judge-model", "smollm2_135M"], "--judge_model goes with --method llm_judge"),
        (  # named where it was looked for: relative paths are read from the current directory
            ["--from-file", "missing.jsonl"],
            f"judgement file missing.jsonl ({Path('missing.jsonl').resolve()}) not found",
        ),
        (["--method", "llm_judge", "--judge-model", "no-such-model"], "unknown model"),
    ],
)
def test_label_option_errors(store_copy, capsys, args, message):
    before = (store_copy / "index.jsonl").read_bytes()
    assert run_extraction("label", store_copy, *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert (store_copy / "index.jsonl").read_bytes() == before


def test_llm_judge_on_alias_gold_fails_before_loading(store_copy, capsys):
    assert run_extraction("label", store_copy, "--method", "llm_judge", "--judge-model", "a/b") == 2
    assert "llm_judge needs gold correct_answers" in capsys.readouterr().err


def test_label_source_index_and_file(store_copy, tmp_path):
    store = TraceStore(store_copy)
    source = label_source(store)
    assert source.name == "index" and source.methods == ("alias_match",)
    assert source.labels == {qid: store.rows[qid].label for qid in store.question_ids}
    first, *rest = store.question_ids
    path = write_jsonl(
        tmp_path / "j.jsonl",
        [judgement(qid, store.rows[qid].generated_answer_clean, 0) for qid in rest],
    )
    source = label_source(store, str(path))
    assert source.labels == {first: None} | dict.fromkeys(rest, 0)
    assert source.describe() == f"{path} [external:panel] ({len(rest)}/{len(rest) + 1} labelled)"
    unrelated = write_jsonl(tmp_path / "other.jsonl", [judgement(first, "another answer", 0)])
    with pytest.raises(UserError, match=r"no judgement in .* matches an answer"):
        label_source(store, str(unrelated))
    with pytest.raises(UserError, match=r"no packaged judgements for .* on demo"):
        label_source(store, "judged")


def test_packaged_judgement_files_are_valid():
    files = sorted(PACKAGED_DIR.glob("*.jsonl"))
    for path in files:
        judgements = read_judgements(path)
        model, dataset = path.stem.rsplit("_", 1)
        assert packaged_judgements(model, dataset) == path
        assert {j.model for j in judgements} == {model}
        assert len({j.question_id for j in judgements}) == len(judgements)
