"""Store damage is detected and named; the writer deletes only its own files; a crash leaves
nothing that lingers. (The reproductions of the reliability audit, docs/RELIABILITY.md.)"""

from __future__ import annotations

import json

import pytest

from common import UserError
from extraction.cli import main as extraction_main
from extraction.store import TraceStore, TraceWriter
from tests.helpers import MANIFEST, make_trace, write


def exit_and_output(capsys, *args) -> tuple[int, str]:
    status = extraction_main([str(arg) for arg in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.out + captured.err


@pytest.fixture
def store(tmp_path):
    write(tmp_path, [make_trace(f"q{i}", seq_len=5 + i) for i in range(5)])
    return tmp_path


def test_checksums_are_recorded_per_shard_and_per_trace(store):
    for row in TraceStore(store).rows.values():
        assert len(row.shard_sha256) == len(row.trace_sha256) == 64
        assert row.shard_bytes == (store / row.shard).stat().st_size
    assert TraceStore(store).verify() == {}


def test_verify_names_the_file_and_trace_of_a_flipped_byte(store, capsys):
    shard = store / TraceStore(store).rows["q3"].shard  # holds q2 and q3
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # tensor data, the last tensor of the file: the header still parses
    shard.write_bytes(bytes(data))
    status, out = exit_and_output(capsys, "inspect", store)
    assert status == 0  # headers and sizes are fine: only a checksum can tell
    status, out = exit_and_output(capsys, "verify", store)
    assert status == 2
    damaged = [line for line in out.splitlines() if line.startswith("damaged:")]
    assert len(damaged) == 1 and shard.name in damaged[0]
    bad = TraceStore(store).verify()[shard.name][1]
    assert len(bad) == 1 and bad[0] in {"q2", "q3"} and bad[0] in damaged[0]
    assert out.strip().splitlines()[-1].startswith("error: 1 of 3 shard files")


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_inspect_and_verify_refuse_a_truncated_or_damaged_shard(store, capsys, damage):
    shard = store / TraceStore(store).rows["q0"].shard
    data = shard.read_bytes()
    shard.write_bytes(
        data[: len(data) // 2] if damage == "truncate" else data[:8] + b"#" + data[9:]
    )
    for command in ("inspect", "verify"):
        status, out = exit_and_output(capsys, command, store)
        assert status == 2, command
        assert f"damaged: {shard}" in out and "error: 1 of 3 shard files" in out
    with pytest.raises(UserError, match=rf"{shard.name}: .*python -m extraction verify"):
        TraceStore(store)["q0"]


def test_a_bad_index_line_is_named_with_its_own_line_number(store):
    index = store / "index.jsonl"
    lines = index.read_text().splitlines()
    lines[2] = lines[2][:40]  # a damaged row in the middle, not a torn last line
    index.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"index.jsonl line 3: not an index row"):
        TraceStore(store)


def test_a_damaged_manifest_is_named_with_its_line(store):
    manifest = store / "manifest.json"
    manifest.write_text('{\n  "settings": {\n    "model": oops\n}')
    with pytest.raises(UserError, match=r"manifest.json line 3: not valid JSON"):
        TraceStore(store)


def test_overwrite_deletes_only_the_runs_files(store):
    unrelated = [
        store / "model.safetensors",
        store / "notes.txt",
        store / "x_shard_0000.safetensors",
    ]
    for path in unrelated:
        path.write_bytes(b"not ours")
    orphan = store / "m_d_shard_0009.safetensors"  # written by the run, never indexed
    orphan.write_bytes(b"ours")
    with TraceWriter(store, MANIFEST, file_prefix="m_d", overwrite=True) as writer:
        assert writer.done_ids == set()
    assert all(path.read_bytes() == b"not ours" for path in unrelated)
    assert not orphan.exists() and not list(store.glob("m_d_shard_*"))


def test_a_killed_manifest_write_is_cleaned_by_the_next_run(store):
    stale = [store / ".manifest.json.k3j2_x.tmp", store / ".index.jsonl.abc.tmp"]
    for path in stale:
        path.write_text("{half")
    TraceWriter(store, MANIFEST, file_prefix="m_d").__exit__(None, None, None)
    assert not any(path.exists() for path in stale)


def test_batches_reach_disk_as_parts_and_are_merged_into_the_shard(tmp_path):
    """The unit of loss is a batch: each commit is on disk and indexed; the shard appears once
    full. A writer that dies (no __exit__) leaves parts that the next writer adopts."""
    writer = TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=10)
    for i in range(3):
        writer.add(make_trace(f"q{i}"))
        writer.commit()
    writer._release_lock()  # the process is killed here: no flush, no merge
    store = TraceStore(tmp_path)
    assert store.question_ids == ["q0", "q1", "q2"] and len(store.shard_files) == 3
    assert all(".part" in path.name for path in store.shard_files)
    assert store["q1"].seq_len == 5

    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=10) as writer:
        assert writer.done_ids == {"q0", "q1", "q2"}
        writer.add(make_trace("q3"))
    store = TraceStore(tmp_path)
    assert [path.name for path in store.shard_files] == ["m_d_shard_0000.safetensors"]
    assert sorted(path.name for path in tmp_path.glob("*.safetensors")) == [
        "m_d_shard_0000.safetensors"
    ]
    assert store.question_ids == ["q0", "q1", "q2", "q3"] and store.verify() == {}
    lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(lines) == 4  # one row per question: the merge rewrote the parts' rows


def test_a_store_without_checksums_stays_readable_and_resumable(store):
    """Stores written before checksums (and parts) existed: read, verified by header, resumed."""
    index = store / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines()]
    for row in rows:
        for key in ("shard_sha256", "shard_bytes", "trace_sha256"):
            row.pop(key)
    index.write_text("".join(json.dumps(row) + "\n" for row in rows))
    old = TraceStore(store)
    assert len(old) == 5 and old.verify() == {} and old.check_headers() == {}
    write(store, [make_trace("q5")])
    assert TraceStore(store).question_ids[-1] == "q5"


def test_a_damaged_part_is_named_before_the_resume_writes(tmp_path):
    writer = TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=10)
    writer.add(make_trace("q0"))
    writer.commit()
    writer._release_lock()  # killed before the merge
    (part,) = tmp_path.glob("*.part*.safetensors")
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(UserError, match=rf"{part.name}: .*the index lists traces in it"):
        TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=10)
