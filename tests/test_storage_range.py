"""A hidden state beyond the storage dtype's range stops the run with one line (Gemma-3's reach
~1e5, past float16's 65504); nothing is stored as ``inf``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from common import UserError
from extraction.final_state import FinalState
from extraction.storage_range import check_storable
from extraction.store import TraceStore
from tests.helpers import run_extraction, tiny_args


def state(peak: float) -> FinalState:
    return FinalState({0: torch.tensor([[peak, 1.0]])}, {}, torch.zeros(1), torch.zeros(1))


def test_the_range_of_each_storage_dtype():
    check_storable([state(6e4)], "float16")
    with pytest.raises(UserError, match=r"1e\+05, beyond float16's range \(65504\).*bfloat16"):
        check_storable([state(1e5)], "float16")
    check_storable([state(1e5)], "bfloat16")
    check_storable([state(1e5)], "float32")
    with pytest.raises(UserError, match=r"not finite.*--torch-dtype bfloat16"):
        check_storable([state(float("nan"))], "float32")


@pytest.fixture(scope="module")
def loud_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with every embedding entry at +-1e5, Gemma-3's magnitude."""
    path = tmp_path_factory.mktemp("loud_model")
    shutil.copytree(tiny_model_dir, path, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(path)
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        weight.copy_(torch.where(weight >= 0, 1e5, -1e5))
    model.save_pretrained(path)
    return path


def test_float16_overflow_stops_the_run_and_bfloat16_stores_it(loud_model_dir, tmp_path, capsys):
    out = tmp_path / "store"
    assert run_extraction(*tiny_args(loud_model_dir, out, n=3)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: hidden state 0 reaches") and "--dtype bfloat16" in err
    assert not TraceStore(out).question_ids  # nothing stored as inf

    out = tmp_path / "bf16"
    assert run_extraction(*tiny_args(loud_model_dir, out, n=3), "--dtype", "bfloat16") == 0
    store = TraceStore(out)
    assert len(store) == 3
    for qid in store.question_ids:
        hidden = store.embeddings(qid)
        assert hidden.dtype == torch.bfloat16 and bool(torch.isfinite(hidden).all())
        assert float(hidden.float().abs().max()) > 65504
