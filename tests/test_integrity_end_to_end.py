"""Every reader checks what it reads, no path leaves a store, every bad input is one line before
the expensive part (issue 21; each case is a row of docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from common import UserError
from extraction.cli import main as extraction_main
from extraction.store import TraceStore, TraceWriter, rewrite_labels
from extraction.store.integrity import sealed
from extraction.store.layout import LOCK, acquire_lock
from extraction.store.verify import verify_store
from extraction.synthetic import (
    SyntheticShape,
    synthetic_manifest,
    synthetic_trace,
    write_synthetic_store,
)
from graphs import GraphSpec, HallucinationGraphDataset
from graphs.cli import main as graphs_main
from tests.helpers import run_extraction, tiny_args
from training.checkpoints import (
    check_checkpoint_matches,
    load_checkpoint,
    point_latest_checkpoint,
    record_checksums,
    resolve_alias,
)
from training.cli import main as training_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def store(synthetic_store, tmp_path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(synthetic_store, copy)
    return copy


def one_line(main, capsys, *args) -> str:
    capsys.readouterr()  # what came before (a model's progress bar)
    assert main([str(arg) for arg in args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err + "\n" + captured.out


def flip(path: Path, key: str) -> None:
    """Flip one byte in the data of tensor ``key`` of a safetensors file."""
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[:8], "little")
    start, _ = json.loads(data[8 : 8 + length])[key]["data_offsets"]
    data[8 + length + start] ^= 0xFF
    path.write_bytes(bytes(data))


def index_rows(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "index.jsonl").read_text().splitlines()]


def write_index(root: Path, rows: list[dict]) -> None:
    (root / "index.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


# --- readers check what they read -------------------------------------------------------------


def test_a_flipped_hidden_state_byte_stops_the_graph_build(store, tmp_path, capsys):
    qid = TraceStore(store).question_ids[2]
    shard = store / TraceStore(store).rows[qid].shard
    flip(shard, f"{qid}/hidden_states.2")
    args = ["build", "--traces", store, "--root", tmp_path / "graphs", "--graph.block", 1]
    err = one_line(graphs_main, capsys, *args)
    assert str(shard) in err and repr(qid) in err and "python -m extraction verify" in err
    with pytest.raises(UserError, match="differs from its recorded sha256"):
        TraceStore(store)[qid]  # the Trace reader (export-pickle, detectors' features)
    assert TraceStore(store)[TraceStore(store).question_ids[0]].seq_len > 0  # others still read


def test_a_hand_edited_label_is_refused_and_label_rewrites_the_checksum(store, capsys):
    rows = index_rows(store)
    rows[1]["label"] = 1 - rows[1]["label"]
    write_index(store, rows)
    with pytest.raises(UserError, match=r"row of '.*' differs from its checksum"):
        TraceStore(store)
    out = one_line(extraction_main, capsys, "verify", store)
    assert (
        f"damaged: {store / 'index.jsonl'}: 1 rows differ" in out and rows[1]["question_id"] in out
    )

    rows[1]["label"] = 1 - rows[1]["label"]
    write_index(store, rows)  # restored
    qid = rows[1]["question_id"]
    rewrite_labels(TraceStore(store), {qid: {"label": 1, "label_method": "x", "label_score": 1.0}})
    assert TraceStore(store).row(qid).label == 1 and verify_store(store)[1] == []


def test_a_flipped_consistency_byte_is_named(tmp_path, capsys):
    root = write_synthetic_store(tmp_path / "store", 3, num_generations=3)
    flip(root / "consistency.safetensors", "synthetic_0001/eigen_hidden")
    with pytest.raises(UserError, match="'synthetic_0001' differs from its sha256"):
        TraceStore(root).consistency("synthetic_0001")
    out = one_line(extraction_main, capsys, "verify", root)
    assert f"damaged: {root / 'consistency.safetensors'}" in out


@pytest.mark.parametrize("damage", ["flip", "delete", "swap"])
def test_a_damaged_graph_file_is_named_by_the_dataset_and_verify(store, tmp_path, capsys, damage):
    root = tmp_path / "graphs"
    dataset = HallucinationGraphDataset(root, store, GraphSpec(block=1))
    first, second = (Path(dataset.processed_dir) / e["file"] for e in dataset.entries[:2])
    if damage == "flip":
        data = bytearray(first.read_bytes())
        data[len(data) // 2] ^= 0xFF
        first.write_bytes(bytes(data))
    elif damage == "delete":
        first.unlink()
    else:
        first.write_bytes(second.read_bytes())
    reopened = HallucinationGraphDataset(root, store, GraphSpec(block=1))
    with pytest.raises(UserError, match=rf"{first} (is missing|differs from the sha256)"):
        reopened[0]
    out = one_line(graphs_main, capsys, "verify", root)
    assert f"damaged: {first}" in out


def test_test_ids_added_to_train_are_refused(store, tmp_path):
    root = tmp_path / "graphs"
    HallucinationGraphDataset(root, store, GraphSpec(block=1), split="train")
    saved = json.loads((root / "splits.json").read_text())
    (key,) = saved
    saved[key]["train"] += saved[key]["val"]
    (root / "splits.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match=r"is in train and val .*delete .*splits.json"):
        HallucinationGraphDataset(root, store, GraphSpec(block=1), split="train")
    saved[key]["train"] = [*saved[key]["train"][: -len(saved[key]["val"])], "not_a_trace"]
    (root / "splits.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="1 ids the store lacks"):
        HallucinationGraphDataset(root, store, GraphSpec(block=1), split="train")


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_flipped_checkpoint_byte_is_refused_before_it_is_read(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(64)}}, folder / "best.ckpt")
    record_checksums(folder)
    assert "state_dict" in load_checkpoint(str(folder / "best.ckpt"))
    flip_byte(folder / "best.ckpt")
    with pytest.raises(UserError, match="differs from the sha256 `fit` recorded"):
        load_checkpoint(str(folder / "best.ckpt"))
    assert resolve_alias("last", tmp_path) == (folder / "best.ckpt").resolve()


def test_a_versioned_checkpoint_is_checked_through_its_link(tmp_path):
    """``fit`` records the sum beside the real file (its version folder); ``test`` names the
    ``checkpoints/best.ckpt`` link, or ``best``/``last``, and the real file is checked."""
    runs = tmp_path / "runs"
    versions = [runs / "lightning_logs" / f"version_{n}" / "checkpoints" for n in (0, 1)]
    for number, folder in enumerate(versions):
        folder.mkdir(parents=True)
        torch.save({"state_dict": {"w": torch.full((64,), number)}}, folder / "best.ckpt")
        os.utime(folder / "best.ckpt", (number, number))
        record_checksums(folder)
    link = point_latest_checkpoint(str(versions[1] / "best.ckpt"), str(runs))
    assert not (link.parent / "checksums.json").exists()
    assert resolve_alias("best", runs) == link
    assert resolve_alias("last", runs) == (versions[1] / "best.ckpt").resolve()
    assert resolve_alias("last", runs, versions[0]) == (versions[0] / "best.ckpt").resolve()
    assert load_checkpoint(str(link))["state_dict"]["w"][0] == 1
    flip_byte(versions[1] / "best.ckpt")
    with pytest.raises(UserError, match=r"version_1/checkpoints/best.ckpt differs from the sha256"):
        load_checkpoint(str(link))
    assert "state_dict" in load_checkpoint(str(versions[0] / "best.ckpt"))


# --- verify sees the whole folder ---------------------------------------------------------------


@pytest.mark.parametrize("damage", ["delete index", "truncate index", "unlisted shard"])
def test_verify_sees_what_the_index_does_not_list(store, capsys, damage):
    rows = index_rows(store)
    if damage == "delete index":
        (store / "index.jsonl").unlink()
    elif damage == "truncate index":
        write_index(store, rows[: len(rows) // 2])
    else:
        shard = store / rows[0]["shard"]
        shutil.copy(shard, store / "synthetic_shard_0099.safetensors")
    out = one_line(extraction_main, capsys, "verify", store)
    expected = {
        "delete index": f"damaged: {store / 'index.jsonl'}: missing, and 2 shard files remain",
        "truncate index": "traces the index does not list (truncated index?)",
        "unlisted shard": "synthetic_shard_0099.safetensors: not listed in the index",
    }[damage]
    assert expected in out


# --- no path leaves the store -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["dataset", "model"])
def test_a_manifest_name_with_a_path_is_refused(store, tmp_path, capsys, field):
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["settings"][field] = "../../escape" if field == "dataset" else "x/.."
    (store / "manifest.json").write_text(json.dumps(manifest))
    err = one_line(extraction_main, capsys, "export-pickle", store)
    assert "cannot name files" in err
    assert not list(tmp_path.rglob("*.pkl"))


def test_a_shard_value_outside_the_store_is_refused(store, capsys):
    rows = index_rows(store)
    rows[0]["shard"] = "../../x.safetensors"
    write_index(
        store, [sealed({k: v for k, v in row.items() if k != "row_sha256"}) for row in rows]
    )
    err = one_line(extraction_main, capsys, "inspect", store)
    assert "'../../x.safetensors' is not a file name in the store" in err


# --- inspect on a damaged store -------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted shard", "edited seq_len", "swapped ids"])
def test_inspect_names_a_damaged_store(store, capsys, damage):
    rows = index_rows(store)
    if damage == "deleted shard":
        (store / rows[0]["shard"]).unlink()
        expected = "missing"
    elif damage == "edited seq_len":
        rows[0]["seq_len"] += 1
        expected = "one of them was edited"
    else:
        rows[0]["question_id"], rows[1]["question_id"] = (
            rows[1]["question_id"],
            rows[0]["question_id"],
        )
        expected = "was edited"
    if damage != "deleted shard":  # re-sealed, as a careful forger would
        write_index(
            store, [sealed({k: v for k, v in r.items() if k != "row_sha256"}) for r in rows]
        )
    out = one_line(extraction_main, capsys, "inspect", store)
    assert expected in out


# --- bad input: one line before the model loads -------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails the test: every case below must stop before it."""
    from extraction import run

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(run, "load_model", refuse)


@pytest.fixture
def question_files(tmp_path) -> dict[str, Path]:
    files = {
        "latin1.jsonl": b'{"question": "caf\xe9?", "answer": {"aliases": ["a"]}}\n',
        "two_questions.csv": b"question,question,answer\nWhat?,Who?,x\n",
        "string_answer.jsonl": b'{"question": "2+2?", "answer": "4"}\n',
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--stop_strings", "['']"], "an empty stop string"),
        (["--max_new_tokens", 100000000], "leaves no room for a prompt"),
        (["--layers", "[]"], "--layers []: keeps no block"),
        (["--prompt_template", "Answer:"], "must contain {question}"),
        (["--max_total_tokens", 100000, "--max_new_tokens", 8], "2048 positions"),
        (["--layers", "[7]"], "out of range"),
        (["--dataset_file", "latin1.jsonl"], "line 1: byte 0xe9 is not UTF-8"),
        (["--dataset_file", "two_questions.csv"], "names the column 'question' twice"),
        (["--dataset_file", "string_answer.jsonl"], "'answer' is '4', not an object"),
    ],
)
def test_bad_run_options_are_one_line_before_the_model(
    tiny_model_dir, tmp_path, capsys, no_model, question_files, extra, expected
):
    extra = [question_files.get(str(value), value) for value in extra]
    args = [*tiny_args(tiny_model_dir, tmp_path / "out"), *extra]
    if "--dataset_file" in extra:
        args[args.index("--dataset") : args.index("--dataset") + 2] = []
    assert expected in one_line(extraction_main, capsys, *args)


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_bad_symlink_output_folder_is_one_line(tiny_model_dir, tmp_path, capsys, no_model, link):
    out = tmp_path / "out"
    if link == "dangling":
        out.symlink_to(tmp_path / "nowhere")
    else:
        out.symlink_to(tmp_path / "other")
        (tmp_path / "other").symlink_to(out)
    err = one_line(extraction_main, capsys, *tiny_args(tiny_model_dir, out))
    assert ("which does not exist" if link == "dangling" else "loops") in err


def test_a_second_writer_is_refused_before_the_model(tiny_model_dir, tmp_path, capsys, no_model):
    out = tmp_path / "out"
    out.mkdir()
    with acquire_lock(out, LOCK):
        err = one_line(extraction_main, capsys, *tiny_args(tiny_model_dir, out))
    assert "another process is writing" in err


def test_a_real_full_disk_is_one_line_and_resumes(tiny_model_dir, tmp_path, capsys):
    """A real tmpfs (where the machine allows mounting one), filled up after a first run."""
    mount = tmp_path / "small"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)]
    if os.geteuid() != 0 or subprocess.run(command, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = mount / "store"
        assert run_extraction(*tiny_args(tiny_model_dir, out, n=3)) == 0
        before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError, match="No space left"):
            while True:  # until the disk is really full
                os.write(fd, bytes(4096))
        os.close(fd)
        args = tiny_args(tiny_model_dir, out, n=12)
        capsys.readouterr()
        assert run_extraction(*args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err  # the model has loaded by then: its log lines come first
        err = err.strip().splitlines()[-1]
        assert err.startswith("error: ")
        assert "No space left on device" in err and "rerun the same command" in err
        assert len(TraceStore(out)) == 3 and verify_store(out)[1] == []
        assert all((out / name).read_bytes() == data for name, data in before.items())
        assert not list(out.glob(".*.tmp"))
        filler.unlink()
        assert run_extraction(*args) == 0
        assert len(TraceStore(out)) == 12 and verify_store(out)[1] == []
    finally:
        # Lazily: this process still maps the store's shards (the reader memory-maps them).
        subprocess.run(["umount", "-l", str(mount)], check=False)


# --- graphs and training options ----------------------------------------------------------


def test_split_ratios_with_an_empty_split_are_refused(store, tmp_path, capsys):
    args = ["build", "--traces", store, "--root", tmp_path / "g", "--graph.block", 1]
    err = one_line(graphs_main, capsys, *args, "--split_ratios", "[1,0,0]")
    assert "three positive numbers" in err and not (tmp_path / "g" / "processed").exists()


def training_args(store: Path, work: Path, *extra) -> list:
    return [
        "--config", Path(__file__).resolve().parents[1] / "configs" / "training" / "gcn.yaml",
        "--data.traces", store, "--data.root", work / "graphs", "--data.graph.block", 1,
        "--trainer.default_root_dir", work / "runs", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "extra", "expected"),
    [
        ("fit", ["--trainer.max_epochs", 0], "trains nothing and writes no checkpoint"),
        ("fit", ["--data.batch_size", 0], "--data.batch_size 0"),
        ("test", ["--ckpt_path", "last"], "--ckpt_path last: no checkpoint in"),
    ],
)
def test_training_options_that_do_nothing_are_one_line(
    store, tmp_path, capsys, command, extra, expected
):
    err = one_line(training_main, capsys, command, *training_args(store, tmp_path, *extra))
    assert expected in err and not (tmp_path / "graphs" / "processed").exists()


# --- reruns remove their own temp files ---------------------------------------------------


def test_reruns_remove_their_own_stale_temp_files(store, tmp_path):
    stale_index = store / ".index.jsonl.killed.tmp"
    stale_index.write_text("half")
    qid = TraceStore(store).question_ids[0]
    rewrite_labels(TraceStore(store), {qid: {"label": 1, "label_method": "x", "label_score": 1.0}})
    assert not stale_index.exists()

    root = tmp_path / "graphs"
    dataset = HallucinationGraphDataset(root, store, GraphSpec(block=1))
    stale_graph = Path(dataset.processed_dir) / ".000000.pt.killed.tmp"
    stale_graph.write_text("half")
    HallucinationGraphDataset(root, store, GraphSpec(block=1), force_reload=True)
    assert not stale_graph.exists()


def test_a_store_of_another_model_is_refused_before_graphs_are_built(store, tmp_path):
    checkpoint = tmp_path / "other.ckpt"
    saved = {"in_channels": 999, "_class_path": "training.models.GCNClassifier"}
    torch.save({"state_dict": {}, "hyper_parameters": saved}, checkpoint)
    model = {"class_path": "training.models.GCNClassifier", "init_args": {}}
    data = {"traces": str(store), "graph": {"layer": 1}, "root": str(tmp_path / "graphs")}
    with pytest.raises(UserError, match="gives 32 node features \\(checkpoint: 999"):
        check_checkpoint_matches(str(checkpoint), model, data)
    assert not (tmp_path / "graphs").exists()


def test_a_store_written_with_no_layer_still_inspects(tmp_path, capsys):
    """``--layers []`` is refused now; a store an older run wrote with it inspects (exit 0)."""
    manifest = synthetic_manifest(SyntheticShape())
    manifest["settings"]["attention_blocks"] = manifest["settings"]["hidden_state_layers"] = []
    trace = synthetic_trace("q0", SyntheticShape(), 3, 0, 0)
    trace.attentions.clear()
    trace.hidden_states.clear()
    with TraceWriter(tmp_path / "s", manifest, file_prefix="synthetic") as writer:
        writer.add(trace)
    assert extraction_main(["inspect", str(tmp_path / "s")]) == 0
    assert "no layer stored" in capsys.readouterr().out
