"""Shared fixtures: synthetic stores (graph and training tests), a tiny random-weight Llama
(extraction tests) and real SmolLM2 and Gemma-3 stores (slow).

Only tests marked ``slow`` may read the benchmark data in ``../shared/data``: a clone without it
skips those and nothing else (a non-slow test that skips for it fails). Set
``HALLUGRAPH_SHARED_DATA`` to another folder (a missing one hides the data) to check that.
"""

from __future__ import annotations

from extraction.threads import set_thread_policy

set_thread_policy()  # `pytest` typed without `make` runs as fast (extraction/threads.py)

import json
import os
from pathlib import Path

import pytest

from extraction.cli import main as extraction_main
from extraction.store import write_synthetic_store

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HALLUGRAPH_SHARED_DATA", REPO.parent / "shared" / "data"))
TRIVIAQA = SHARED_DATA / "triviaqa" / "validation.jsonl"
TRUTHFULQA = SHARED_DATA / "truthfulqa" / "TruthfulQA.csv"
SHARED_DATA_MISSING = "shared benchmark data not found"


def require_shared_data(*paths: Path) -> None:
    """Skip unless ``paths`` (default: TriviaQA and TruthfulQA) exist; for ``slow`` tests only."""
    missing = [path for path in paths or (TRIVIAQA, TRUTHFULQA) if not path.exists()]
    if missing:
        pytest.skip(f"{SHARED_DATA_MISSING}: {', '.join(map(str, missing))}")


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (TriviaQA and TruthfulQA there), or skip: for ``slow`` tests only."""
    require_shared_data()
    return SHARED_DATA


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that skips for missing shared data must be marked ``slow``: fail it otherwise."""
    report = yield
    if (
        report.skipped
        and SHARED_DATA_MISSING in str(report.longrepr)
        and item.get_closest_marker("slow") is None
    ):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} reads {SHARED_DATA} but is not marked slow"
    return report


def judgement(qid: str, answer: str, label: int, judge: str = "panel") -> dict:
    """One row of a judgement file (extraction.judgements) for this answer text."""
    from extraction.judgements import answer_sha256

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


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP's busy-waiting makes two threads
    orders of magnitude slower on tiny graphs (see extraction/threads.py)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-block random Llama with SmolLM2's real tokenizer: the same code paths, in seconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from extraction.offline_model import converted_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(converted_checkpoint())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_args(model_dir: Path, out: Path, n: int = 6) -> list:
    """The tiny model on the first ``n`` bundled demo questions (TriviaQA-style, with aliases)."""
    return [
        "--model", model_dir, "--dataset", "demo", "--num-samples", n, "--output-dir", out,
        "--num-beams", 2, "--max-new-tokens", 6,
        "--batch-size", 3, "--shard-size", 4,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory) -> Path:
    """Six random traces (the tiny model's sizes: 2 blocks, 4 heads, hidden 32; 12 prompt and
    1-6 answer tokens) written through the real ``TraceWriter``, labelled 0/1 alternately. Read
    only: copy it to change it."""
    return write_synthetic_store(tmp_path_factory.mktemp("synthetic") / "store")


@pytest.fixture(scope="session")
def tiny_store(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_store") / "store"
    assert run_extraction(*tiny_args(tiny_model_dir, out)) == 0
    return out


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


@pytest.fixture(scope="session")
def smollm2_triviaqa_store(tmp_path_factory) -> Path:
    return real_store(tmp_path_factory, "triviaqa", TRIVIAQA, **{"shard-size": 8})


@pytest.fixture(scope="session")
def smollm2_demo_store(tmp_path_factory) -> Path:
    """20 bundled demo questions: the real model without ``../shared/data`` (``make test``)."""
    return real_store(tmp_path_factory, "demo", None, **{"shard-size": 8})


@pytest.fixture(scope="session")
def smollm2_truthfulqa_store(tmp_path_factory) -> Path:
    return real_store(tmp_path_factory, "truthfulqa", TRUTHFULQA)


@pytest.fixture(scope="session")
def gemma3_demo_store(tmp_path_factory) -> Path:
    """20 bundled demo questions (Gemma-3-270M gets 1 of the first 16 TriviaQA rows right: too
    few for a detector's splits), 24 new tokens (a base model never ends with EOS, so beam search
    always runs to the limit; most answers end at their line break well before), bfloat16
    storage (Gemma-3's hidden states pass float16's range)."""
    flags = {"max-new-tokens": 24, "dtype": "bfloat16", "shard-size": 8}
    return real_store(tmp_path_factory, "demo", None, "gemma3_270M", **flags)
