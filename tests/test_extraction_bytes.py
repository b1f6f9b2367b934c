"""The same questions give the same trace bytes as the store made before issue 24's changes
(the SmolLM2 demo store, main at 1fae723: ``tests/data/demo_smollm2_trace_sha256.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extraction.store import TraceStore
from tests.helpers import run_extraction

REFERENCE = Path(__file__).parent / "data" / "demo_smollm2_trace_sha256.json"
CONFIG = Path(__file__).parents[1] / "configs" / "extraction" / "default.yaml"


@pytest.mark.slow
def test_first_demo_batch_has_the_previous_trace_bytes(tmp_path):
    expected = json.loads(REFERENCE.read_text())["trace_sha256"]
    out = tmp_path / "store"
    args = ["--config", CONFIG, "--num-samples", len(expected), "--output-dir", out]
    assert run_extraction(*args) == 0
    store = TraceStore(out)
    assert {qid: store.rows[qid].trace_sha256 for qid in store.question_ids} == expected
