"""Model registry and the seed's quantization rule (logic only; loading is exercised elsewhere)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from common import UserError
from extraction.models import HF_NAMES, quantization_config, resolve_source


def test_registry_has_the_seed_models_and_accepts_hub_ids_and_folders(tmp_path):
    assert HF_NAMES["llama2_chat_7B"] == "meta-llama/Llama-2-7b-chat-hf"
    assert resolve_source("qwen_2.5_7B") == "Qwen/Qwen2.5-7B-Instruct"
    assert resolve_source("llama3.1_8B_4bit") == "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit"
    assert resolve_source("org/model") == "org/model"
    assert resolve_source(str(tmp_path)) == str(tmp_path)
    with pytest.raises(UserError, match="unknown model"):
        resolve_source("gpt5")


def test_offline_model_resolves_to_a_cached_checkpoint():
    path = resolve_source("smollm2_135M")
    assert (Path(path) / "model.safetensors").exists()


def test_cpu_auto_skips_quantization_and_says_so_quietly(caplog):
    with caplog.at_level(logging.INFO):
        assert quantization_config("auto", prequantized=False, cuda=False) == ("none", None)
    (record,) = [r for r in caplog.records if "skipping 4-bit quantization" in r.message]
    assert record.levelno == logging.INFO


@pytest.mark.parametrize("requested", ["4bit", "8bit"])
def test_cpu_explicit_quantization_is_an_error(requested):
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        quantization_config(requested, prequantized=False, cuda=False)


def test_cuda_auto_is_nf4_with_fp16_compute_and_prequantized_loads_as_is():
    name, config = quantization_config("auto", prequantized=False, cuda=True)
    assert name == "4bit" and config.load_in_4bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.float16
    assert quantization_config("auto", prequantized=True, cuda=True) == ("prequantized", None)
    assert quantization_config("8bit", prequantized=False, cuda=True)[1].load_in_8bit
    with pytest.raises(UserError):
        quantization_config("2bit", prequantized=False, cuda=False)
