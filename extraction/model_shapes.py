"""A model's sizes without its weights: from a local ``config.json``, or, for the registry's hub
models (``HF_NAMES``), from their published configs written out below, so a 7B run can be sized
on a machine that has never downloaded it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from common import UserError
from extraction.models import HF_NAMES, first_line, is_prequantized
from extraction.offline_model import PACKAGED_MODELS, converted_checkpoint

# The fields of each hub model's config.json that fix its parameter count and trace shapes.
KNOWN_CONFIGS: dict[str, dict] = {
    "llama2_chat_7B": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "tie_word_embeddings": False,
    },
    "qwen_2.5_7B": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "llama3.1_8B_4bit": {
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
        "quantization_config": {
            "quant_method": "bitsandbytes",
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
        },
    },
}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model.

    ``linear_parameters`` are those of the blocks' linear layers: what bitsandbytes quantizes
    (embeddings, norms and the output head stay in the compute dtype)."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int
    vocab_size: int
    parameters: int
    linear_parameters: int
    prequantized: bool
    source: str

    @property
    def description(self) -> str:
        return (
            f"{self.num_layers} blocks × {self.num_heads} heads ({self.num_kv_heads} key/value), "
            f"hidden {self.hidden_size}, vocab {self.vocab_size}, "
            f"{self.parameters / 1e9:.2f} B parameters; {self.source}"
        )


def model_shape(model: str, revision: str | None = None) -> ModelShape:
    """The sizes of ``model`` (registry id, packaged model, local folder or a hub id already in
    the local Hugging Face cache); never downloads anything."""
    from transformers import AutoConfig

    if model in KNOWN_CONFIGS:
        fields = dict(KNOWN_CONFIGS[model])
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        return shape_of(config, f"the published config of {HF_NAMES[model]}")
    if model in PACKAGED_MODELS:
        folder = converted_checkpoint(model)
        return shape_of(AutoConfig.from_pretrained(folder), "the packaged model's config")
    if Path(model).is_dir():
        try:
            config = AutoConfig.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise UserError(f"{model} has no readable config.json ({first_line(exc)})") from None
        return shape_of(config, str(Path(model) / "config.json"))
    try:
        config = AutoConfig.from_pretrained(model, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        known = ", ".join(KNOWN_CONFIGS)
        raise UserError(
            f"no shapes known for {model!r} without downloading it: pass a local model folder "
            f"(with its config.json) as --model, or one of {known}"
        ) from None
    return shape_of(config, f"the config of {model} in the local Hugging Face cache")


def shape_of(config, source: str) -> ModelShape:
    """Count the parameters of an empty (meta-device) model built from ``config``."""
    from transformers import AutoModelForCausalLM

    text = config.get_text_config()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    output_head = model.get_output_embeddings()
    linear = sum(
        module.weight.numel()
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not output_head
    )
    heads = text.num_attention_heads
    return ModelShape(
        num_layers=text.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        vocab_size=text.vocab_size,
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        linear_parameters=linear,
        prequantized=is_prequantized(config),
        source=source,
    )
