"""Shared fixtures: synthetic stores (graph and training tests), a tiny random-weight Llama
(extraction tests) and real SmolLM2 and Gemma-3 stores (slow).

Only tests marked ``slow`` may read the benchmark data in ``../shared/data``: a clone without it
skips those and nothing else (a non-slow test that skips for it fails). Set
``HALLUGRAPH_SHARED_DATA`` to another folder (a missing one hides the data) to check that.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # `pytest` typed without `make` runs as fast (common/threads.py)

from pathlib import Path

import pytest

from extraction.synthetic import write_synthetic_store
from tests.helpers import (
    SHARED_DATA,
    SHARED_DATA_MISSING,
    TRIVIAQA,
    TRUTHFULQA,
    real_store,
    require_shared_data,
    run_extraction,
    tiny_args,
)


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


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP's busy-waiting makes two threads
    orders of magnitude slower on tiny graphs (see common/threads.py)."""
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
