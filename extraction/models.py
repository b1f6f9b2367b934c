"""Model registry and loading: short ids (the seed's ``HF_NAMES``), hub ids or local folders,
with the seed's quantization rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from common import UserError
from extraction.offline_model import PACKAGED_MODELS, converted_checkpoint

log = logging.getLogger(__name__)

OFFLINE_MODEL = "smollm2_135M"

HF_NAMES: dict[str, str] = {
    "llama2_chat_7B": "meta-llama/Llama-2-7b-chat-hf",
    "qwen_2.5_7B": "Qwen/Qwen2.5-7B-Instruct",
    "llama3.1_8B_4bit": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
    OFFLINE_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct (packaged GGUF, offline)",
    "gemma3_270M": "google/gemma-3-270m (base; packaged GGUF, offline)",
}


@dataclass(frozen=True)
class StorageRange:
    """A model's storage dtypes: the safe default, and those its hidden states are known to
    exceed (a run with one stops before the model loads)."""

    default: str = "float16"
    overflows: tuple[str, ...] = ()
    why: str = ""


# Gemma-3's residual stream reaches ~1e5 in its middle blocks (hidden state 8 of Gemma-3-270M:
# 6.84e4), past float16's 65504; bfloat16 has float32's range.
STORAGE_RANGES: dict[str, StorageRange] = {
    "gemma3_270M": StorageRange("bfloat16", ("float16",), "its hidden state 8 reaches 6.84e+04"),
}


def storage_dtype(model: str, requested: str | None) -> str:
    """The storage dtype of a run of ``model``: ``requested``, or the registry's safe default;
    a dtype the model is known to overflow is a one-line error."""
    known = STORAGE_RANGES.get(model, StorageRange())
    if requested is None:
        return known.default
    if requested in known.overflows:
        raise UserError(
            f"--dtype {requested} cannot hold {model}'s hidden states ({known.why}, beyond "
            f"{requested}'s range): leave --dtype out (the model's default is {known.default}) "
            "or give bfloat16 or float32"
        )
    return requested


QUANTIZATION_CHOICES = ("auto", "4bit", "8bit", "none")
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str
    revision: str | None
    quantization: str

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size


def resolve_source(model: str) -> str:
    """Short id → hub id or folder; an existing folder or an ``org/name`` id passes through."""
    if model in PACKAGED_MODELS:
        return str(converted_checkpoint(model))
    if model in HF_NAMES:
        return HF_NAMES[model]
    if Path(model).is_dir() or model.count("/") == 1:
        return model
    raise UserError(
        f"unknown model {model!r}: use one of {', '.join(HF_NAMES)}, a hub id (org/name) "
        "or a local model folder"
    )


def is_prequantized(config) -> bool:
    return getattr(config, "quantization_config", None) is not None


def quantization_name(requested: str, prequantized: bool, cuda: bool) -> str:
    """The seed's rule: pre-quantized checkpoints load as they are (``prequantized``); others
    get 4-bit NF4 (``4bit``) on CUDA. bitsandbytes needs CUDA, so ``auto`` on CPU is ``none``."""
    if requested not in QUANTIZATION_CHOICES:
        raise UserError(f"--quantization must be one of {', '.join(QUANTIZATION_CHOICES)}")
    if prequantized:
        return "prequantized"
    if requested == "none" or (requested == "auto" and not cuda):
        return "none"
    if not cuda:
        raise UserError(
            f"--quantization {requested} needs a CUDA GPU (bitsandbytes); use --quantization none"
        )
    return "8bit" if requested == "8bit" else "4bit"


def quantization_config(requested: str, prequantized: bool, cuda: bool):
    """``(name, BitsAndBytesConfig or None)`` by :func:`quantization_name`: 4-bit NF4 with fp16
    compute."""
    name = quantization_name(requested, prequantized, cuda)
    if name == "none" and requested == "auto":
        # INFO: the default on every CPU run, and nothing for the user to act on.
        log.info("No CUDA device: skipping 4-bit quantization, loading unquantized.")
    if name in ("prequantized", "none"):
        return name, None
    from transformers import BitsAndBytesConfig

    if name == "8bit":
        return name, BitsAndBytesConfig(load_in_8bit=True)
    return name, BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16, bnb_4bit_quant_type="nf4"
    )


def load_model(
    model: str,
    *,
    quantization: str = "auto",
    revision: str | None = None,
    torch_dtype: str = "auto",
    device: str | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer (left padding, a pad token) ready for batching."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(model)
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    try:
        config = AutoConfig.from_pretrained(source, revision=revision)
    except OSError as exc:
        raise UserError(f"cannot load model {model!r} from {source}: {first_line(exc)}") from None
    quant_name, bnb = quantization_config(quantization, is_prequantized(config), cuda)
    dtype = compute_dtype(torch_dtype, cuda)
    kwargs = {"revision": revision, "dtype": dtype, "attn_implementation": "sdpa"}
    if bnb is not None:
        kwargs["quantization_config"] = bnb
    if cuda:
        kwargs["device_map"] = device or "auto"
    log.info("Loading model %s (%s, quantization=%s)", source, dtype, quant_name)
    loaded = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    loaded.eval()
    if not cuda and device:
        loaded.to(device)
    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(loaded, tokenizer, model, source, revision, quant_name)


def compute_dtype(name: str, cuda: bool) -> torch.dtype:
    """``auto``: float16 on CUDA (what the seed computes in), float32 on CPU (fp16 matmuls are
    slow and inexact there)."""
    if name == "auto":
        return torch.float16 if cuda else torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
            name
        ]
    except KeyError:
        raise UserError("--torch_dtype must be auto, float32, float16 or bfloat16") from None


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
