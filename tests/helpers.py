"""Helpers the tests share (imported by test files and conftest.py; a test file imports no other
test file)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from extraction.cli import main as extraction_main
from extraction.store import TraceStore, TraceWriter
from extraction.store.trace import Trace
from extraction.synthetic import SyntheticShape, synthetic_trace


def random_attention(heads: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """``[heads, T, T]`` causal attention whose rows sum to 1."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(heads, seq_len, seq_len, generator=generator)
    causal = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
    weights = scores.masked_fill(~causal, 0)
    return weights / weights.sum(-1, keepdim=True)


REPO = Path(__file__).resolve().parents[1]
GCN = REPO / "configs" / "training" / "gcn.yaml"


def run_args(store: Path, work: Path, *extra: str, layer: int = 1) -> list[str]:
    """`configs/training/gcn.yaml` on a tiny store: 3 epochs, runs under ``work/runs``."""
    return [
        "--config", GCN, "--data.traces", store, "--data.root", work / "graphs",
        "--data.graph.block", layer, "--data.split_ratios", "[0.34,0.33,0.33]",
        "--data.batch_size", 2,
        "--trainer.default_root_dir", work / "runs", "--trainer.max_epochs", 3,
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


SHARED_DATA = Path(os.environ.get("HALLUGRAPH_SHARED_DATA", REPO.parent / "shared" / "data"))


TRIVIAQA = SHARED_DATA / "triviaqa" / "validation.jsonl"


TRUTHFULQA = SHARED_DATA / "truthfulqa" / "TruthfulQA.csv"


SHARED_DATA_MISSING = "shared benchmark data not found"


def require_shared_data(*paths: Path) -> None:
    """Skip unless ``paths`` (default: TriviaQA and TruthfulQA) exist; for ``slow`` tests only."""
    missing = [path for path in paths or (TRIVIAQA, TRUTHFULQA) if not path.exists()]
    if missing:
        pytest.skip(f"{SHARED_DATA_MISSING}: {', '.join(map(str, missing))}")


def judgement(qid: str, answer: str, label: int, judge: str = "panel") -> dict:
    """One row of a judgement file (extraction.store.judgements) for this answer text."""
    from extraction.store.judgements import answer_sha256

    return {
        "question_id": qid,
        "model": "tiny",
        "answer_sha256": answer_sha256(answer),
        "label": label,
        "reason": "test",
        "judge": judge,
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run_extraction(*args: str) -> int:
    """``python -m extraction ARGS`` in-process; returns the exit status."""
    return extraction_main([str(arg) for arg in args])


def assert_one_line_errors(main, cases: list[str], capsys) -> None:
    """Each command line (split on spaces) exits with status 2 and one ``error: ...`` line."""
    for args in cases:
        assert main(args.split()) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)


def tiny_args(model_dir: Path, out: Path, n: int = 6) -> list:
    """The tiny model on the first ``n`` bundled demo questions (TriviaQA-style, with aliases)."""
    return [
        "--model", model_dir, "--dataset", "demo", "--num-samples", n, "--output-dir", out,
        "--num-beams", 2, "--max-new-tokens", 6,
        "--batch-size", 3, "--shard-size", 4,
    ]  # fmt: skip


def real_store(
    tmp_path_factory,
    dataset: str,
    path: Path | None,
    model: str = "smollm2_135M",
    n: int = 20,
    **flags,
) -> Path:
    """A packaged real model, seed settings unless ``flags`` say otherwise, on the first ``n``
    real rows of ``path`` (of the bundled set when ``None``: no shared data needed) (slow)."""
    out = tmp_path_factory.mktemp(f"{model}_{dataset}") / "store"
    if path is not None:
        require_shared_data(path)
        flags["dataset-file"] = path
    extra = [str(value) for flag, value in flags.items() for value in (f"--{flag}", value)]
    status = run_extraction(
        "--model", model, "--dataset", dataset, "--num-samples", n, "--output-dir", out, *extra
    )  # fmt: skip
    assert status == 0
    return out


def manifest(model: str = "m") -> dict:
    """The manifest of a run of :func:`make_trace`'s traces (2 blocks, 2 heads, hidden 4)."""
    settings = {"attention_blocks": [0, 1], "hidden_state_layers": [0, 1, 2]}
    return {
        "settings": {"model": model, "dataset": "d", **settings},
        "model": {"num_layers": 2, "num_heads": 2, "hidden_size": 4},
    }


MANIFEST = manifest()


def make_trace(qid: str, seq_len: int = 5, n_prompt: int = 3) -> Trace:
    """A random trace: 2 blocks, 2 heads, hidden 4, labelled 0."""
    shape = SyntheticShape(blocks=2, heads=2, hidden=4, prompt_tokens=n_prompt)
    return synthetic_trace(qid, shape, seq_len - n_prompt, label=0, seed=len(qid) + seq_len)


def write(root, traces, **kwargs) -> None:
    with TraceWriter(root, MANIFEST, file_prefix="m_d", max_traces_per_shard=2, **kwargs) as w:
        for trace in traces:
            w.add(trace)


def one_line_error(capsys, *args) -> str:
    assert run_extraction(*args) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err
    return last


def fit_and_test(model, train: list[Data], val: list[Data], test: list[Data]) -> dict:
    trainer = Trainer(
        max_epochs=15,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        model, DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=64)
    )
    (metrics,) = trainer.test(model, DataLoader(test, batch_size=64), verbose=False)
    return metrics


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def strs(args: list) -> list[str]:
    return [str(arg) for arg in args]


def best_checkpoint(work: Path) -> Path:
    (path,) = (work / "runs" / "checkpoints").glob("*.ckpt")
    assert path.name == "best.ckpt"
    return path


def check_report(report_path: Path, n_questions: int | None = None) -> dict:
    report = json.loads(report_path.read_text())
    metrics = report["metrics"]
    assert metrics["n"] == report["data"]["n"] == (n_questions or metrics["n"]) > 0
    if 0 < metrics["n_hallucinated"] < metrics["n"]:
        assert 0.0 <= metrics["auroc"] <= 1.0 and 0.0 <= metrics["auprc"] <= 1.0
    else:  # one class only: AUROC is undefined, and written as such
        assert metrics["auroc"] is None
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["threshold"] <= 1.0
    assert len(report["data"]["sha256"]) == 64
    assert report["data"]["labels"].startswith("index [")  # which labels were used
    assert report["config"]["data"]["traces"] and report["config"]["model"]["class_path"]
    assert (report_path.parent / report["roc_curve"]["figure"]).read_bytes()[:8] == PNG_MAGIC
    return report


def write_config(tmp_path: Path, store: Path, **overrides) -> Path:
    config = yaml.safe_load((REPO / "configs/graphs/default.yaml").read_text(encoding="utf-8"))
    config.update(traces=str(store), root=str(tmp_path / "graphs"))
    config["graph"] = {"block": 15, **overrides}  # the spec inline, instead of a file
    path = tmp_path / "graphs.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


FP16_TOL = 2e-3  # fp16 storage: ~3 significant digits


def check_attention_is_causal_softmax(store: TraceStore) -> None:
    num_heads = store.manifest.model.num_heads
    for qid in store.question_ids:
        seq_len = store.row(qid).seq_len
        for block in store.manifest.settings.attention_blocks:
            attention = store.attention(qid, block).float()
            assert attention.shape == (num_heads, seq_len, seq_len)
            assert torch.count_nonzero(torch.triu(attention, diagonal=1)) == 0
            torch.testing.assert_close(
                attention.sum(-1), torch.ones(num_heads, seq_len), atol=FP16_TOL * 4, rtol=0
            )


def check_store_equals_eager_pass(store: TraceStore, model, tolerance: float) -> None:
    """Every stored trace against ``model(tokens)`` alone (unbatched, eager), to ``tolerance``:
    the storage dtype's precision."""
    for qid in store.question_ids:
        tokens = store.tokens(qid)
        with torch.no_grad():
            out = model(tokens[None], output_attentions=True, output_hidden_states=True)
        for block, reference in enumerate(out.attentions):
            torch.testing.assert_close(
                store.attention(qid, block).float(), reference[0], atol=tolerance, rtol=0
            )
        blocks = range(len(out.attentions))
        stored = [store.embeddings(qid)] + [store.resid_post(qid, block) for block in blocks]
        for hidden, reference in zip(stored, out.hidden_states, strict=True):
            torch.testing.assert_close(hidden.float(), reference[0], atol=tolerance, rtol=tolerance)


def check_real_store(store: TraceStore, n: int, sizes: dict) -> None:
    """``n`` traces, no errors, the model's sizes in the manifest, causal softmax attention, each
    answer cut before a line break or "Question:", a label each, every layer stored."""
    assert len(store) == n and not store.errors
    assert asdict(store.manifest.model) | {"device": "cpu"} == sizes | {"device": "cpu"}
    check_attention_is_causal_softmax(store)
    for trace in store:
        assert "Question:" not in trace.generated_answer_clean
        assert "\n" not in trace.generated_answer_clean
        assert trace.label in (0, 1)
        assert len(trace.hidden_states) == sizes["num_layers"] + 1
        assert len(trace.attentions) == sizes["num_layers"]


def questions_to_kill_mid_run(batch_size: int) -> int:
    """Questions in a generation window and an eighth at ``batch_size``: beam answers come a
    window of generation batches at a time (extraction.run), and a window's small batches then
    commit within milliseconds of each other, so a run this long is still generating its second
    window when the first window's traces are indexed, and a kill lands mid-run however fast
    the machine (twice it stays within the 350 bundled questions)."""
    from extraction.run import GENERATION_WINDOW
    from extraction.tracing import generation_batch

    window = GENERATION_WINDOW * generation_batch(batch_size)
    return window + window // 8
