"""Checks made before an extraction loads its model, and before a resume adds to a store: a bad
option, an unwritable output folder or a resume that would mix data or labels costs one line,
not a model load and not a mixed store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from common import UserError, check_name
from extraction.config import STORAGE_DTYPES, ExtractionConfig
from extraction.label_methods import METHODS, default_method, recorded_method
from extraction.models import QUANTIZATION_CHOICES, TORCH_DTYPES
from extraction.questions import Question
from extraction.store.layout import LOCK, acquire_lock, every_rank_lock
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
    check_sampling(cfg)
    if cfg.layers is not None and any(layer < 0 for layer in cfg.layers):
        raise UserError(f"--layers {cfg.layers}: block indices start at 0")
    if cfg.layers is not None and not cfg.layers:
        raise UserError("--layers []: keeps no block; name at least one, or omit it for all")
    if cfg.max_new_tokens >= cfg.max_total_tokens:
        raise UserError(
            f"--max_new_tokens {cfg.max_new_tokens} leaves no room for a prompt within "
            f"--max_total_tokens {cfg.max_total_tokens}: every question would be an error row"
        )
    if any(not stop for stop in cfg.stop_strings):
        raise UserError(
            f"--stop_strings {cfg.stop_strings}: an empty stop string ends every answer before "
            "it starts; remove it"
        )
    if "{question}" not in cfg.prompt_template:
        raise UserError("--prompt_template must contain {question}")
    check_name(cfg.model_slug, "the model name")


def check_sampling(cfg: ExtractionConfig) -> None:
    """``--num_generations`` and the sampling options agree and are in range."""
    if cfg.num_generations < 1:
        raise UserError(f"--num_generations must be at least 1 (got {cfg.num_generations})")
    if not cfg.temperature > 0:
        raise UserError(f"--temperature must be above 0 (got {cfg.temperature})")
    if not 0 < cfg.top_p <= 1:
        raise UserError(f"--top_p must be in (0, 1] (got {cfg.top_p}); 1 keeps every token")
    if cfg.num_generations > 1 and not cfg.do_sample:
        raise UserError(
            f"--num_generations {cfg.num_generations} needs --do_sample: generation 0 is the "
            "beam-search answer, the others are sampled"
        )
    if cfg.do_sample and cfg.num_generations == 1:
        raise UserError(
            "--do_sample draws generations 1..K-1: pass --num_generations 2 or more (generation "
            "0 stays the beam-search answer)"
        )


def check_output_dir(path: Path) -> None:
    """Refuse an output directory that cannot be written before anything expensive runs: a
    symbolic link (in it or above it) to nowhere or in a loop, a file, no permission."""
    for candidate in (path, *path.parents):
        if not candidate.is_symlink():
            continue
        try:
            candidate.resolve(strict=True)
        except FileNotFoundError:
            raise UserError(
                f"--output_dir {path}: {candidate} is a symbolic link to "
                f"{os.readlink(candidate)}, which does not exist; create the target or remove "
                "the link"
            ) from None
        except (RuntimeError, OSError):  # Python raises RuntimeError on a loop before 3.13
            raise UserError(
                f"--output_dir {path}: {candidate} is a symbolic link that loops; remove it"
            ) from None
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


def check_unlocked(store_dir: Path, lock_name: str) -> None:
    """Another process writing to the store is refused now, not after the model loads (the
    writer takes the lock for good later; this only looks). A one-process run also needs every
    rank's lock: it cleans up after them."""
    if (store_dir / lock_name).exists():
        acquire_lock(store_dir, lock_name).close()
    if lock_name == LOCK:
        with every_rank_lock(store_dir):
            pass


def check_same_questions(
    rows: dict[str, IndexRow], questions: list[Question], label_method: str | None, root: Path
) -> None:
    """A resume must not mix data or labels: every question already in the store (each of its
    generations) must have the same text and gold answers, and its label the method this run
    would use."""
    by_question: dict[str, list[IndexRow]] = {}
    for row in rows.values():
        by_question.setdefault(row.unit, []).append(row)
    for question in questions:
        for row in by_question.get(question.question_id, ()):
            _check_same_question(row, question, label_method, root)


def _check_same_question(
    row: IndexRow, question: Question, label_method: str | None, root: Path
) -> None:
    if row.question != question.question or row.gold != question.gold:
        raise UserError(
            f"{root} already holds question {question.question_id!r} with another text or "
            "other gold answers: this is other data under the same ids; use another "
            "--output_dir (or --overwrite)"
        )
    expected = label_method or default_method(question.gold) or "none"
    stored = row.label_method if row.ok else expected
    if recorded_method(stored) != recorded_method(expected):
        fix = (
            f"pass --label_method {stored} to resume"
            if stored in METHODS
            else f"relabel it with `python -m extraction label {root} --method M` first"
        )
        raise UserError(
            f"{root} labelled {question.question_id!r} with {stored!r}, this run would use "
            f"{expected!r}: {fix}, or write to another --output_dir"
        )
