"""Train/val/test splits: fixed by question id, stratified by label, seeded, and saved.

A question's place in the shuffle is the hash of ``seed:question_id``, not a draw from a random
stream, so it does not depend on which other questions are present or on the Python version.
``root/splits.json`` keeps every split ever made there and is read before anything is
recomputed, so every detector trained from the same root is scored on the same questions. It is
checked each time it is read: no trace (or question) in two splits, none the store lacks, none
of the store's left out; a hand-edited file is a one-line error, never a leak into training.

A store with several generations per question (trace ids ``qid#k``) is split by question: all of
a question's traces go to one split (no question is both trained on and scored), and questions
are stratified by the label of their generation 0. Train keeps every generation; val and test
keep generation 0 only (:data:`SCORED_GENERATION`, the answer the literature scores), so every
detector is selected and scored on the same answers. With one generation per question every
trace is its own question and the splits are the ones made before generations existed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Literal

from common import UserError, atomic_write_text, read_json

SPLITS = ("train", "val", "test")
SPLITS_FILE = "splits.json"
# The generation that val and test hold (train holds every generation of its questions).
SCORED_GENERATION = 0
# The stratum of a question whose generation 0 is missing (an error) or unlabelled.
NO_GENERATION_0 = "no generation 0"
# What a split keeps together: single questions, or whole relation groups of a fact store.
SplitBy = Literal["question", "relation"]
SPLIT_BY: tuple[str, ...] = ("question", "relation")


def relation_of(row) -> str | None:
    """A fact question's relation (issue 20's question set): the index row's ``relation`` field
    when the store has one, else its gold's ``relation``; None for other questions."""
    return getattr(row, "relation", None) or (row.gold or {}).get("relation")


def check_ratios(ratios: Sequence[float]) -> None:
    """Three positive fractions summing to 1: training needs examples, validation picks the
    checkpoint and test scores it, so an empty split is an error, not a silent zero."""
    if len(ratios) != len(SPLITS) or min(ratios) <= 0 or not math.isclose(sum(ratios), 1):
        raise UserError(
            f"split ratios must be three positive numbers (train val test) summing to 1, "
            f"got {list(ratios)}"
        )


def _overlap(splits: dict, key: str, units: dict[str, str]) -> str | None:
    """Why the saved ``splits`` cannot be used (None: they can). ``units`` maps each trace id
    to its question (empty: ids are not checked against a store)."""
    if not isinstance(splits, dict) or any(
        not isinstance(splits.get(name), list) or not all(isinstance(q, str) for q in splits[name])
        for name in SPLITS
    ):
        return f"{key!r} is not three lists of ids ({', '.join(SPLITS)})"
    seen: dict[str, str] = {}
    for name in SPLITS:
        for qid in splits[name]:
            unit = units.get(qid, qid)
            if seen.get(unit, name) != name:
                return f"{key!r}: {qid!r} is in {seen[unit]} and {name}"
            seen[unit] = name
    if units:
        listed = {qid for name in SPLITS for qid in splits[name]}
        if unknown := sorted(listed - set(units)):
            return f"{key!r}: {len(unknown)} ids the store lacks ({unknown[0]!r}...)"
        if left_out := sorted(set(units) - listed):
            return (
                f"{key!r}: {len(left_out)} of the store's traces in no split ({left_out[0]!r}...)"
            )
    return None


def splits_problems(root: str | Path) -> list[str]:
    """One line per saved split of ``root/splits.json`` that puts an id in two splits."""
    path = Path(root) / SPLITS_FILE
    if not path.exists():
        return []
    saved = read_json(path)
    if not isinstance(saved, dict):
        return [f"{path}: not a JSON object"]
    return [
        f"{path}: {problem}"
        for key, splits in saved.items()
        if (problem := _overlap(splits, key, {})) is not None
    ]


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
    *,
    units: Sequence[str] | None = None,
    generations: Sequence[int] | None = None,
) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` of the trace ids ``question_ids``:
    each label class is shuffled and cut by ``ratios`` on its own; every split keeps the input
    order of ``question_ids``.

    ``units[i]`` is the question trace ``i`` answers and ``generations[i]`` its generation
    (default: every trace is its own question, generation 0). The questions are what is
    shuffled and cut, each in the class of its generation 0's label (:data:`NO_GENERATION_0`
    when that trace is absent), and each split holds every trace of its questions."""
    check_ratios(ratios)
    units = list(question_ids) if units is None else list(units)
    generations = [SCORED_GENERATION] * len(units) if generations is None else list(generations)
    if not len(question_ids) == len(labels) == len(units) == len(generations):
        raise ValueError(
            f"{len(question_ids)} question ids but {len(labels)} labels, {len(units)} units "
            f"and {len(generations)} generations"
        )
    if len(set(question_ids)) != len(question_ids):
        raise ValueError("question ids must be unique")
    if len(set(zip(units, generations, strict=True))) != len(units):
        raise ValueError("a question has two traces of the same generation")
    strata: dict[str, Hashable] = dict.fromkeys(units, NO_GENERATION_0)
    for unit, generation, label in zip(units, generations, labels, strict=True):
        if generation == SCORED_GENERATION:
            strata[unit] = label
    classes: dict[Hashable, list[str]] = {}
    for unit, label in strata.items():
        classes.setdefault(label, []).append(unit)
    chosen: dict[str, set[str]] = {name: set() for name in SPLITS}
    for members in classes.values():
        members.sort(key=lambda unit: _shuffle_key(seed, unit))
        start = 0
        for name, count in zip(SPLITS, _allocate(len(members), ratios), strict=True):
            chosen[name].update(members[start : start + count])
            start += count
    return {
        name: [q for q, unit in zip(question_ids, units, strict=True) if unit in chosen[name]]
        for name in SPLITS
    }


def make_group_splits(
    question_ids: Sequence[str],
    groups: Sequence[str | None],
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
) -> dict[str, list[str]]:
    """Splits that hold out whole groups (``groups[i]`` is trace ``i``'s relation): the groups
    are ordered by the hash of ``seed:group``; test takes groups from the front until it holds
    at least ``ratios[2]`` of the traces, then val likewise, and train the rest, each split at
    least one group. Every split keeps the input order. A question's traces share its relation,
    so they share a split."""
    check_ratios(ratios)
    if len(question_ids) != len(groups):
        raise ValueError(f"{len(question_ids)} question ids but {len(groups)} groups")
    missing = sum(group is None for group in groups)
    if missing:
        raise UserError(
            f"--data.split_by relation: {missing} of {len(groups)} traces have no relation; "
            "use a store of the fact questions (`python -m extraction --dataset facts`)"
        )
    sizes = Counter(groups)
    if len(sizes) < len(SPLITS):
        raise UserError(
            f"--data.split_by relation needs at least {len(SPLITS)} relations, the store has "
            f"{len(sizes)} ({', '.join(sorted(sizes))}); use --data.split_by question"
        )
    order = sorted(sizes, key=lambda group: _shuffle_key(seed, group))
    chosen: dict[str, list[str]] = {name: [] for name in SPLITS}
    for name, ratio, later in (("test", ratios[2], 2), ("val", ratios[1], 1)):
        # ``later``: the splits still to fill after this one, each needs a group left.
        while len(order) > later and (
            not chosen[name] or sum(sizes[g] for g in chosen[name]) < ratio * len(groups)
        ):
            chosen[name].append(order.pop(0))
    chosen["train"] = order
    members = {name: set(found) for name, found in chosen.items()}
    return {
        name: [q for q, group in zip(question_ids, groups, strict=True) if group in members[name]]
        for name in SPLITS
    }


def nested_subset(
    question_ids: Sequence[str],
    units: Sequence[str],
    strata: dict[str, Hashable],
    size: int,
    seed: int = 0,
) -> list[str]:
    """The traces of ``size`` questions of a split, for a learning curve: questions are put in
    one seeded order in which every stratum (label) is spread evenly (a question's key is its
    rank within its stratum over the stratum's size, ties by the hash of ``seed:unit``), and the
    first ``size`` are kept. So a smaller subset is inside every larger one of the same seed,
    and each keeps the split's class balance. ``units[i]`` is trace ``i``'s question,
    ``strata[unit]`` its stratum; the input order is kept."""
    distinct = list(dict.fromkeys(units))
    if size > len(distinct):
        raise UserError(
            f"a train size of {size} is above the train split's {len(distinct)} questions; "
            "choose sizes up to it"
        )
    by_stratum: dict[Hashable, list[str]] = {}
    for unit in distinct:
        by_stratum.setdefault(strata[unit], []).append(unit)
    keys = {}
    for members in by_stratum.values():
        members.sort(key=lambda unit: _shuffle_key(seed, f"subset:{unit}"))
        for rank, unit in enumerate(members):
            keys[unit] = ((rank + 0.5) / len(members), _shuffle_key(seed, f"subset:{unit}"))
    kept = set(sorted(distinct, key=keys.__getitem__)[:size])
    return [q for q, unit in zip(question_ids, units, strict=True) if unit in kept]


def load_or_make_splits(
    root: str | Path,
    question_ids: Sequence[str],
    labels: Sequence[Hashable],
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    *,
    units: Sequence[str] | None = None,
    generations: Sequence[int] | None = None,
    groups: Sequence[str | None] | None = None,
) -> dict[str, list[str]]:
    """The splits saved in ``root/splits.json`` for these traces, labels, seed and ratios
    (and questions and generations, see :func:`make_splits`), made and saved first if missing.
    With ``groups`` (each trace's relation) whole groups are held out
    (:func:`make_group_splits`) under a key of their own. With one generation per question the
    key is the one made before generations existed, so saved files stay valid."""
    check_ratios(ratios)
    identity = [list(question_ids), list(labels)]
    single = (units is None or list(units) == list(question_ids)) and not any(generations or ())
    if not single:
        identity += [list(units or question_ids), list(generations or [0] * len(question_ids))]
    if groups is not None:
        identity.append(list(groups))
    fingerprint = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]
    key = f"seed={seed} ratios={'/'.join(str(float(r)) for r in ratios)} questions={fingerprint}"
    key += " by=relation" * (groups is not None)
    path = Path(root) / SPLITS_FILE
    saved = read_json(path) if path.exists() else {}
    if key not in saved:
        saved[key] = (
            make_splits(question_ids, labels, seed, ratios, units=units, generations=generations)
            if groups is None
            else make_group_splits(question_ids, groups, seed, ratios)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(saved, indent=1))
    members = list(units) if units is not None else list(question_ids)
    problem = _overlap(saved[key], key, dict(zip(question_ids, members, strict=True)))
    if problem is not None:
        raise UserError(
            f"{path}: {problem} (edited by hand?); delete {path} to make the splits again, or "
            "restore it"
        )
    return saved[key]
