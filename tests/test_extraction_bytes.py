"""The same questions give the same trace bytes as the store made before issue 24's changes
(the SmolLM2 demo store, main at 1fae723: ``tests/data/demo_smollm2_trace_sha256.json``).

The reference hashes the tensors as a reader returns them (:func:`content_sha256`), not the
index's ``trace_sha256``, whose definition the integrity work changed (per-tensor digests)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from extraction.store import TraceStore
from tests.helpers import run_extraction

REFERENCE = Path(__file__).parent / "data" / "demo_smollm2_trace_sha256.json"
CONFIG = Path(__file__).parents[1] / "configs" / "extraction" / "default.yaml"


def content_sha256(store: TraceStore, question_id: str) -> str:
    """sha256 of a trace's tokens, log-probs, entropies, hidden states and attentions, in block
    order: the bytes a reader gets, whatever the shard layout or checksum scheme."""
    trace = store[question_id]
    digest = hashlib.sha256()
    tensors = [trace.tokens, trace.token_logprobs, trace.token_entropy]
    tensors += [trace.hidden_states[i] for i in sorted(trace.hidden_states)]
    tensors += [trace.attentions[i] for i in sorted(trace.attentions)]
    for tensor in tensors:
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@pytest.mark.slow
def test_first_demo_batch_has_the_previous_trace_bytes(tmp_path):
    expected = json.loads(REFERENCE.read_text())["content_sha256"]
    out = tmp_path / "store"
    args = ["--config", CONFIG, "--num-samples", len(expected), "--output-dir", out]
    assert run_extraction(*args) == 0
    store = TraceStore(out)
    assert {qid: content_sha256(store, qid) for qid in store.question_ids} == expected
