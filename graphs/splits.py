"""Train/val/test splits: fixed by question id, stratified by label, seeded, and saved.

A question's place in the shuffle is the hash of ``seed:question_id``, not a draw from a random
stream, so it does not depend on which other questions are present or on the Python version.
``root/splits.json`` keeps every split ever made there and is read before anything is
recomputed, so every detector trained from the same root is scored on the same questions.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Hashable, Sequence
from pathlib import Path

from extraction import UserError, atomic_write_text, read_json

SPLITS = ("train", "val", "test")
SPLITS_FILE = "splits.json"


def check_ratios(ratios: Sequence[float]) -> None:
    if len(ratios) != len(SPLITS) or min(ratios) < 0 or not math.isclose(sum(ratios), 1):
        raise UserError(
            f"split ratios must be three non-negative numbers (train val test) summing to 1, "
            f"got {list(ratios)}"
        )


def _allocate(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder rounding of ``n * ratios``: counts that sum to ``n`` (ties go to the
    earlier split, so a class of one lands in train)."""
    exact = [n * ratio for ratio in ratios]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(ratios)), key=lambda k: (counts[k] - exact[k], k))
    for k in by_remainder[: n - sum(counts)]:
        counts[k] += 1
    return counts


def _shuffle_key(seed: int, question_id: str) -> str:
    return hashlib.sha256(f"{seed}:{question_id}".encode()).hexdigest()


def make_splits(
    question_ids: Sequence[str],
    labels: Sequence[Hashable],
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}``: each label class is shuffled and cut by
    ``ratios`` on its own; every split keeps the input order of ``question_ids``."""
    check_ratios(ratios)
    if len(question_ids) != len(labels):
        raise ValueError(f"{len(question_ids)} question ids but {len(labels)} labels")
    if len(set(question_ids)) != len(question_ids):
        raise ValueError("question ids must be unique")
    classes: dict[Hashable, list[str]] = {}
    for question_id, label in zip(question_ids, labels, strict=True):
        classes.setdefault(label, []).append(question_id)
    chosen: dict[str, set[str]] = {name: set() for name in SPLITS}
    for members in classes.values():
        members.sort(key=lambda question_id: _shuffle_key(seed, question_id))
        start = 0
        for name, count in zip(SPLITS, _allocate(len(members), ratios), strict=True):
            chosen[name].update(members[start : start + count])
            start += count
    return {name: [q for q in question_ids if q in chosen[name]] for name in SPLITS}


def load_or_make_splits(
    root: str | Path,
    question_ids: Sequence[str],
    labels: Sequence[Hashable],
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
) -> dict[str, list[str]]:
    """The splits saved in ``root/splits.json`` for these questions, labels, seed and ratios,
    made and saved first if missing."""
    check_ratios(ratios)
    identity = json.dumps([list(question_ids), list(labels)]).encode()
    fingerprint = hashlib.sha256(identity).hexdigest()[:12]
    key = f"seed={seed} ratios={'/'.join(str(float(r)) for r in ratios)} questions={fingerprint}"
    path = Path(root) / SPLITS_FILE
    saved = read_json(path) if path.exists() else {}
    if key not in saved:
        saved[key] = make_splits(question_ids, labels, seed, ratios)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(saved, indent=1))
    return saved[key]
