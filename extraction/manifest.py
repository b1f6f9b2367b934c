"""A run's :class:`~extraction.store.Manifest`: what the run is (model, data, decoding, blocks),
built from its settings and the loaded model; the writer serialises it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from extraction.config import ExtractionConfig
from extraction.models import LoadedModel
from extraction.questions import Question
from extraction.store import Decoding, Manifest, ModelInfo, Requested, RunSettings
from extraction.store.trace import hidden_state_indices

STORE_FORMAT = "hallugraph-trace-store/1"
PACKAGES = ("hallugraph", "torch", "transformers", "datasets", "safetensors", "bitsandbytes")


def build_manifest(
    cfg: ExtractionConfig,
    loaded: LoadedModel,
    dataset: str,
    blocks: list[int],
    requested: list[Question],
) -> Manifest:
    config = loaded.model.config
    settings = RunSettings(
        model=cfg.model,
        model_source=loaded.source,
        revision=cfg.revision,
        quantization=loaded.quantization,
        torch_dtype=str(loaded.model.dtype).removeprefix("torch."),
        storage_dtype=cfg.dtype,
        prompt_template=cfg.prompt_template,
        chat_template=cfg.chat_template,
        decoding=decoding(cfg),
        dataset=dataset,
        dataset_file=cfg.dataset_file and str(Path(cfg.dataset_file).resolve()),
        attention_blocks=tuple(blocks),
        hidden_state_layers=tuple(hidden_state_indices(blocks)),
        attention_format=cfg.attention_format,
        min_attention=cfg.min_attention,
    )
    model = ModelInfo(
        num_layers=loaded.num_layers,
        num_heads=loaded.num_heads,
        hidden_size=loaded.hidden_size,
        vocab_size=config.vocab_size,
        architecture=(config.architectures or [type(loaded.model).__name__])[0],
        device=str(loaded.model.device),
    )
    questions = [[q.question_id, q.question, q.gold] for q in requested]
    return Manifest(
        settings=settings,
        model=model,
        format=STORE_FORMAT,
        # The latest run's questions: `inspect` counts those missing (an interrupted run).
        requested=Requested(
            question_ids=tuple(q.question_id for q in requested),
            sha256=hashlib.sha256(json.dumps(questions).encode()).hexdigest(),
        ),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        python=platform.python_version(),
        packages={name: _version(name) for name in PACKAGES},
    )


def decoding(cfg: ExtractionConfig) -> Decoding:
    """The manifest's decoding; a one-generation run's as it was before sampling existed (the
    sampling fields unset), so resuming an older store is not refused for settings it could not
    have written."""
    beam = Decoding(
        num_beams=cfg.num_beams,
        do_sample=False,
        max_new_tokens=cfg.max_new_tokens,
        early_stopping=cfg.early_stopping,
        stop_strings=tuple(cfg.stop_strings),
    )
    if cfg.num_generations == 1:
        return beam
    return dataclasses.replace(
        beam,
        do_sample=cfg.do_sample,
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        seed=cfg.seed,
    )


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
