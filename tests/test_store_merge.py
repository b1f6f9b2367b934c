"""Parts are merged into their shard by streaming: the shard reads back as the loading merge
wrote it, and a crash at any step of the merge leaves a store that resumes."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from common import UserError
from extraction.checks import check_unlocked
from extraction.store import TraceStore, TraceWriter, writer
from extraction.store.concat import concat_safetensors, read_header
from extraction.store.verify import verify_store
from tests.helpers import MANIFEST, make_trace

SHARD = "m_d_shard_0000.safetensors"


class Killed(BaseException):
    """The process dies here: nothing catches it, nothing after it runs."""


def data_section(path) -> bytes:
    start, _ = read_header(path)
    return path.read_bytes()[start:]


def loading_merge(parts, target) -> None:
    """The merge as the writer did it before streaming: load every part, ``save_file`` once."""
    tensors, records = {}, {}
    for part in parts:
        with safe_open(str(part), framework="pt") as handle:
            records.update(json.loads(handle.metadata()["records"]))
            tensors.update({key: handle.get_tensor(key) for key in handle.keys()})  # noqa: SIM118
    metadata = {"format": "hallugraph-shard/1", "records": json.dumps(records, ensure_ascii=False)}
    save_file(tensors, str(target), metadata=metadata)


def test_concatenation_is_what_save_file_writes(tmp_path):
    """Every dtype the library orders, odd sizes (a 3-element float16 would misalign what
    follows it without the dtype ordering), a name in two sources: the last one wins."""
    dtypes = [torch.float16, torch.int64, torch.bool, torch.float32, torch.bfloat16, torch.uint8]
    dtypes += [torch.int32, torch.int16, torch.int8, torch.float64, torch.float8_e4m3fn]
    generator = torch.Generator().manual_seed(0)
    sources, everything = [], {}
    for number in range(3):
        tensors = {
            f"t{number}_{index}/{dtype}".replace("torch.", ""): (
                torch.randn(number + 1, 3, generator=generator) * 10
            ).to(dtype)
            for index, dtype in enumerate(dtypes)
        }
        tensors["shared"] = torch.full((number + 2,), float(number))
        save_file(tensors, str(tmp_path / f"source{number}.safetensors"))
        sources.append(tmp_path / f"source{number}.safetensors")
        everything.update(tensors)
    metadata = {"format": "x", "records": json.dumps({"q": {"tokens_decoded": ["é", "\n"]}})}
    concat_safetensors(sources, tmp_path / "streamed.safetensors", metadata)
    save_file(everything, str(tmp_path / "loaded.safetensors"), metadata=metadata)

    streamed, loaded = tmp_path / "streamed.safetensors", tmp_path / "loaded.safetensors"
    assert read_header(streamed) == read_header(loaded)
    assert data_section(streamed) == data_section(loaded)
    with safe_open(str(streamed), framework="pt") as handle:
        assert handle.metadata() == metadata
        assert set(handle.keys()) == set(everything)
        for key, tensor in everything.items():
            assert torch.equal(handle.get_tensor(key), tensor), key
    assert torch.equal(everything["shared"], torch.full((4,), 2.0))


def test_an_unknown_dtype_is_refused(tmp_path):
    source = tmp_path / "odd.safetensors"
    save_file({"x": torch.zeros(2)}, str(source))
    _, header = read_header(source)
    header["x"]["dtype"] = "Q4"
    body = json.dumps(header).encode()
    source.write_bytes(len(body).to_bytes(8, "little") + body + b"\0" * 8)
    with pytest.raises(ValueError, match="Q4"):
        concat_safetensors([source], tmp_path / "out.safetensors", {})


def killed_writer(root, count: int = 5, batch: int = 2) -> None:
    """A writer that committed ``count`` traces in batches of ``batch``, then was killed before
    its merge."""
    live = TraceWriter(root, MANIFEST, file_prefix="m_d", max_traces_per_shard=100)
    for i in range(count):
        live.add(make_trace(f"q{i}", seq_len=4 + i))
        if i % batch == batch - 1:
            live.commit()
    live.commit()
    live._release_lock()


def finish(root) -> TraceStore:
    """Rerun: adopt the parts, add one trace, merge; the store verifies and holds every trace."""
    with TraceWriter(root, MANIFEST, file_prefix="m_d", max_traces_per_shard=100) as resumed:
        resumed.add(make_trace("q9"))
    store = TraceStore(root)
    assert verify_store(store.root)[1] == []
    assert [path.name for path in store.shard_files] == [SHARD]
    assert sorted(path.name for path in root.glob("*.safetensors")) == [SHARD]
    assert not list(root.glob(".*.tmp"))
    return store


def test_the_streamed_shard_is_the_loading_merges_shard(tmp_path):
    """Same tensors, records, trace hashes and data bytes as the merge that loaded the parts."""
    killed_writer(tmp_path)
    parts = sorted(tmp_path.glob("*.part*.safetensors"))
    assert len(parts) == 3
    before = TraceStore(tmp_path)
    hashes = {qid: row.trace_sha256 for qid, row in before.rows.items()}
    traces = {qid: before[qid] for qid in before.question_ids}
    saved = tmp_path.parent / "loading_merge"
    saved.mkdir()
    loading_merge(parts, saved / SHARD)

    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=100):
        pass  # adopts the parts and merges them
    store = TraceStore(tmp_path)
    assert verify_store(store.root)[1] == []
    assert {qid: row.trace_sha256 for qid, row in store.rows.items()} == hashes
    streamed = tmp_path / SHARD
    (_, header), (_, expected) = read_header(streamed), read_header(saved / SHARD)
    records, expected_records = (
        json.loads(h.pop("__metadata__")["records"]) for h in (header, expected)
    )
    assert header == expected and records == expected_records
    assert list(records) == [f"q{i}" for i in range(5)]
    assert data_section(streamed) == data_section(saved / SHARD)
    for qid, trace in traces.items():
        again = store[qid]
        assert again.tokens_decoded == trace.tokens_decoded
        for block in trace.attentions:
            assert torch.equal(again.attentions[block], trace.attentions[block])
        for index in trace.hidden_states:
            assert torch.equal(again.hidden_states[index], trace.hidden_states[index])


def test_a_kill_while_the_shard_is_written_leaves_the_parts_in_charge(tmp_path):
    killed_writer(tmp_path)
    (tmp_path / f".{SHARD}.x1y2.tmp").write_bytes(b"half a shard")
    store = finish(tmp_path)
    assert store.question_ids == [f"q{i}" for i in range(5)] + ["q9"]


def test_a_kill_after_the_shard_is_renamed_before_the_index_points_at_it(tmp_path, monkeypatch):
    """The shard is on disk but unindexed: the rerun merges the parts again over it."""
    killed_writer(tmp_path)

    def die(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(writer, "update_rows", die)
    with (
        pytest.raises(Killed),
        TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=2) as live,
    ):
        live.add(make_trace("q5"))  # the shard is full: merge
    monkeypatch.undo()
    assert (tmp_path / SHARD).exists()
    assert all(".part" in path.name for path in TraceStore(tmp_path).shard_files)
    store = finish(tmp_path)
    assert store.question_ids == [f"q{i}" for i in range(6)] + ["q9"]


def test_a_kill_after_the_index_points_at_the_shard_before_the_parts_go(tmp_path, monkeypatch):
    """The index names the shard: the parts are leftovers, which the rerun deletes."""
    killed_writer(tmp_path)
    real_unlink = type(tmp_path).unlink

    def die_on_parts(path, *args, **kwargs):
        if ".part" in path.name:
            raise Killed
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "unlink", die_on_parts)
    with pytest.raises(Killed), TraceWriter(tmp_path, MANIFEST, file_prefix="m_d"):
        pass
    monkeypatch.undo()
    assert list(tmp_path.glob("*.part*.safetensors"))
    assert [path.name for path in TraceStore(tmp_path).shard_files] == [SHARD]
    shutil.copy(tmp_path / SHARD, tmp_path / "first.bak")
    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d", max_traces_per_shard=100) as resumed:
        resumed.add(make_trace("q9"))
    store = TraceStore(tmp_path)
    assert verify_store(store.root)[1] == [] and not list(tmp_path.glob("*.part*.safetensors"))
    assert store.question_ids == [f"q{i}" for i in range(5)] + ["q9"]
    assert [path.name for path in store.shard_files] == [SHARD, SHARD.replace("0000", "0001")]
    assert (tmp_path / "first.bak").read_bytes() == (tmp_path / SHARD).read_bytes()


def rank_writer(root, rank: int, count: int) -> TraceWriter:
    """Rank ``rank`` of a multi-process run with ``count`` traces committed, still open."""
    live = TraceWriter(root, MANIFEST, file_prefix=f"m_d_rank{rank}", lock_name=f".lock.rank{rank}")
    for i in range(count):
        live.add(make_trace(f"r{rank}q{i}", seq_len=4 + i))
        live.commit()
    return live


def test_a_one_process_rerun_removes_what_a_killed_rank_never_indexed(tmp_path):
    """docs/RELIABILITY.md: rank 1 was killed after saving a part, before indexing it; a rerun
    with one process writes other names, so it must remove the rank's file itself."""
    rank_writer(tmp_path, rank=1, count=2)._release_lock()
    part = next(tmp_path.glob("m_d_rank1_shard_0000.part*.safetensors"))
    never_indexed = [
        tmp_path / "m_d_rank1_shard_0000.part0009.safetensors",
        tmp_path / "m_d_rank1_shard_0004.safetensors",
    ]
    for path in never_indexed:
        shutil.copy(part, path)
    kept = [tmp_path / "notes.txt", tmp_path / "other_shard_0000.safetensors"]
    for path in kept:
        path.write_text("not ours")
    assert len(verify_store(tmp_path)[1]) >= len(never_indexed)

    with TraceWriter(tmp_path, MANIFEST, file_prefix="m_d") as rerun:
        rerun.add(make_trace("q9"))
    assert not any(path.exists() for path in never_indexed)
    assert all(path.read_text() == "not ours" for path in kept)
    for path in kept:
        path.unlink()
    store = TraceStore(tmp_path)
    assert verify_store(store.root)[1] == []
    assert sorted(store.question_ids) == ["q9", "r1q0", "r1q1"]


def test_a_one_process_run_is_refused_while_a_rank_writes(tmp_path):
    """A live rank's files are never the one-process writer's to remove: it is refused, at once
    (before the model loads) and by the writer, and the rank's files stay."""
    live = rank_writer(tmp_path, rank=0, count=1)
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(UserError, match="another process is writing"):
        check_unlocked(tmp_path, ".lock")
    with pytest.raises(UserError, match="another process is writing"):
        TraceWriter(tmp_path, MANIFEST, file_prefix="m_d")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == files | {".lock": b""}
    live.add(make_trace("r0q1"))
    live.__exit__(None, None, None)
    assert sorted(TraceStore(tmp_path).question_ids) == ["r0q0", "r0q1"]
