"""Consumers of a store with several generations per question: splits by question, the
sampling detectors on the stored consistency data, and the benchmark and baselines scoring
generation 0."""

from __future__ import annotations

import json

import pytest

from graphs.splits import SPLITS, load_or_make_splits, make_splits

# Made by the splitter before generations existed (seed 3, default ratios): one generation per
# question must keep giving exactly these splits, under the same splits.json key.
LEGACY_IDS = [f"q{k:02d}" for k in range(20)]
LEGACY_LABELS = [int(k % 3 == 0) for k in range(20)]
LEGACY_KEY = "seed=3 ratios=0.7/0.15/0.15 questions=b37db8a46d38"
LEGACY_SPLITS = {
    name: [f"q{k:02d}" for k in numbers]
    for name, numbers in (
        ("train", (0, 2, 5, 6, 7, 9, 10, 13, 14, 15, 16, 17, 18, 19)),
        ("val", (1, 11, 12)),
        ("test", (3, 4, 8)),
    )
}


def k_traces(n_questions: int, k: int) -> tuple[list[str], list[str], list[int]]:
    """Trace ids ``q#g``, their questions and generations, question by question."""
    rows = [(f"q{q:02d}#{g}", f"q{q:02d}", g) for q in range(n_questions) for g in range(k)]
    ids, units, generations = (list(column) for column in zip(*rows, strict=True))
    return ids, units, generations


def test_one_generation_per_question_keeps_the_legacy_splits_and_key(tmp_path):
    assert make_splits(LEGACY_IDS, LEGACY_LABELS, seed=3) == LEGACY_SPLITS
    explicit = make_splits(
        LEGACY_IDS, LEGACY_LABELS, 3, units=LEGACY_IDS, generations=[0] * len(LEGACY_IDS)
    )
    assert explicit == LEGACY_SPLITS
    saved = tmp_path / "splits.json"
    saved.write_text(json.dumps({LEGACY_KEY: LEGACY_SPLITS}, indent=1))
    before = saved.read_bytes()
    assert load_or_make_splits(tmp_path, LEGACY_IDS, LEGACY_LABELS, 3) == LEGACY_SPLITS
    again = load_or_make_splits(
        tmp_path, LEGACY_IDS, LEGACY_LABELS, 3, units=LEGACY_IDS, generations=[0] * 20
    )
    assert again == LEGACY_SPLITS and saved.read_bytes() == before  # read, not remade


def test_a_question_never_straddles_splits_and_generation_0_stratifies():
    ids, units, generations = k_traces(40, 4)
    first = [int(q % 4 == 0) for q in range(40)]  # generation 0's labels: 10 positive
    samples = [(q * 7 + g) % 2 for q in range(40) for g in range(4)]  # any labels
    labels = [first[int(u[1:])] if g == 0 else samples[i] for i, (u, g) in enumerate(
        zip(units, generations, strict=True))]  # fmt: skip
    splits = make_splits(ids, labels, 5, units=units, generations=generations)
    question_of = dict(zip(ids, units, strict=True))
    questions = {name: {question_of[t] for t in splits[name]} for name in SPLITS}
    assert sum(len(q) for q in questions.values()) == 40  # disjoint
    for name in SPLITS:  # every generation of a split's questions, in input order
        assert splits[name] == [t for t in ids if question_of[t] in questions[name]]
    # the split of the questions is the one-generation split of generation 0
    by_first = make_splits(sorted(set(units)), first, 5)
    assert {name: sorted(q) for name, q in questions.items()} == by_first
    # the samples' labels play no part; generation 0's do
    flipped = [1 - label if g else label for label, g in zip(labels, generations, strict=True)]
    assert make_splits(ids, flipped, 5, units=units, generations=generations) == splits
    ones = [1 if g == 0 else label for label, g in zip(labels, generations, strict=True)]
    assert make_splits(ids, ones, 5, units=units, generations=generations) != splits


def test_a_question_without_generation_0_still_lands_in_one_split():
    ids, units, generations = k_traces(6, 3)
    keep = [i for i, g in enumerate(generations) if not (units[i] == "q02" and g == 0)]
    ids, units, generations = ([column[i] for i in keep] for column in (ids, units, generations))
    splits = make_splits(ids, [0] * len(ids), 0, (0.5, 0.25, 0.25), units=units,
                         generations=generations)  # fmt: skip
    homes = [name for name in SPLITS if {"q02#1", "q02#2"} <= set(splits[name])]
    assert len(homes) == 1


def test_two_traces_of_one_generation_are_refused():
    with pytest.raises(ValueError, match="same generation"):
        make_splits(["a", "b"], [0, 1], units=["q", "q"], generations=[0, 0])
