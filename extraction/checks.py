"""Checks made before an extraction loads its model, and before a resume adds to a store: a bad
option, an unwritable output folder or a resume that would mix data or labels costs one line,
not a model load and not a mixed store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from extraction.config import STORAGE_DTYPES, ExtractionConfig
from extraction.errors import UserError
from extraction.label_methods import METHODS, default_method
from extraction.models import QUANTIZATION_CHOICES, TORCH_DTYPES
from extraction.questions import Question, check_name
from extraction.store.sparse import check_attention_format

if TYPE_CHECKING:
    from extraction.store import IndexRow


def check_options(cfg: ExtractionConfig) -> None:
    """Every option that can be checked without the model, before it loads."""
    at_least_one = {
        "--batch_size": cfg.batch_size,
        "--num_beams": cfg.num_beams,
        "--max_new_tokens": cfg.max_new_tokens,
        "--max_total_tokens": cfg.max_total_tokens,
        "--shard_size": cfg.shard_size,
        "--shard_max_mb": cfg.shard_max_mb,
    }
    for flag, value in at_least_one.items():
        if value < 1:
            raise UserError(f"{flag} must be at least 1 (got {value})")
    choices = {
        "--dtype": (cfg.dtype, STORAGE_DTYPES),
        "--quantization": (cfg.quantization, QUANTIZATION_CHOICES),
        "--torch_dtype": (cfg.torch_dtype, TORCH_DTYPES),
        "--label_method": (cfg.label_method, (None, *METHODS)),
    }
    for flag, (value, allowed) in choices.items():
        if value not in allowed:
            shown = ", ".join(str(choice) for choice in allowed if choice is not None)
            raise UserError(f"{flag} {value!r} is not one of {shown}")
    check_attention_format(cfg.attention_format, cfg.min_attention)
    if cfg.label_method == "llm_judge":
        raise UserError(
            "llm_judge labels a finished store: extract, then run `python -m extraction label "
            "DIR --method llm_judge --judge_model NAME`"
        )
    if cfg.layers is not None and any(layer < 0 for layer in cfg.layers):
        raise UserError(f"--layers {cfg.layers}: block indices start at 0")
    check_name(cfg.model_slug, "the model name")


def check_output_dir(path: Path) -> None:
    """Refuse an output directory that cannot be written before anything expensive runs."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"--output_dir {path}: {existing} is a file, not a directory; pick a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"--output_dir {path}: cannot write in {existing} (read-only or no permission); "
            "pick a writable folder"
        )


def check_same_questions(
    rows: dict[str, IndexRow], questions: list[Question], label_method: str | None, root: Path
) -> None:
    """A resume must not mix data or labels: every question already in the store must have the
    same text and gold answers, and its label the method this run would use."""
    for question in questions:
        row = rows.get(question.question_id)
        if row is None:
            continue
        if row.question != question.question or row.gold != question.gold:
            raise UserError(
                f"{root} already holds question {question.question_id!r} with another text or "
                "other gold answers: this is other data under the same ids; use another "
                "--output_dir (or --overwrite)"
            )
        expected = label_method or default_method(question.gold) or "none"
        stored = row.label_method if row.ok else expected
        if stored != expected:
            fix = (
                f"pass --label_method {stored} to resume"
                if stored in METHODS
                else f"relabel it with `python -m extraction label {root} --method M` first"
            )
            raise UserError(
                f"{root} labelled {question.question_id!r} with {stored!r}, this run would use "
                f"{expected!r}: {fix}, or write to another --output_dir"
            )
