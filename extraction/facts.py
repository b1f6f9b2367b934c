"""The fact question set: PopQA-style questions, one template per relation, over the facts of
:mod:`extraction.fact_sources`.

``python -m extraction questions facts --output FILE`` writes it as a local question file;
``python -m extraction --dataset facts`` builds the default set in memory (the same rows, so a
store made either way holds the same questions). Rows carry the question-file fields
(``question_id``, ``question``, ``answer: {value, aliases}``) plus ``relation``, ``subject`` and
``popularity``. The set is a function of the pinned packages, the seed, the size and the mix only.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from common import UserError
from extraction.fact_sources import RELATIONS, Fact, Relation
from extraction.labels import contains_span, normalize_tokens

log = logging.getLogger(__name__)

DEFAULT_NUM_QUESTIONS = 5000
# The mix chosen from the SmolLM2 pilot (docs/EXTRACTION.md, "Fact questions"): every relation
# but the calling code (SmolLM2 knew none), and each relation's 1,200 most popular subjects (past
# rank 1,000 SmolLM2 knew no city).
DEFAULT_RELATIONS = [name for name in RELATIONS if name != "country_calling_code"]
DEFAULT_MAX_RANK = 1200


@dataclass(frozen=True)
class FactQuestion:
    question_id: str
    question: str
    relation: str
    subject: str
    popularity: int
    value: str
    aliases: tuple[str, ...]
    distractors: tuple[str, ...] = ()

    def row(self) -> dict:
        answer = {"value": self.value, "aliases": list(self.aliases)}
        if self.distractors:
            answer["distractors"] = list(self.distractors)
        return {
            "question_id": self.question_id,
            "question": self.question,
            "answer": answer,
            "relation": self.relation,
            "subject": self.subject,
            "popularity": self.popularity,
        }


def check_relations(relations: list[str] | None) -> list[str]:
    """The relations asked for (the default mix when None), unknown names refused."""
    if relations is None:
        return list(DEFAULT_RELATIONS)
    unknown = [name for name in relations if name not in RELATIONS]
    if unknown or not relations:
        raise UserError(
            f"unknown relation {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(RELATIONS)}"
        )
    return list(dict.fromkeys(relations))


def _question(relation: Relation, fact: Fact) -> FactQuestion | None:
    """The question for one fact, or None when it would give its answer away: an answer sharing a
    word with the subject ("Mexico City" for Mexico) is dropped, and so is the question when that
    leaves no answer."""
    subject_tokens = set(normalize_tokens(fact.subject))
    answers = [
        names
        for names in fact.answers
        if not any(subject_tokens & set(normalize_tokens(name)) for name in names)
    ]
    if not answers:
        return None
    aliases = tuple(dict.fromkeys(name for names in answers for name in names))
    return FactQuestion(
        question_id=f"facts_{relation.name}_{fact.key}",
        question=relation.template.format(subject=fact.subject),
        relation=relation.name,
        subject=fact.subject,
        popularity=fact.popularity,
        value=answers[0][0],
        aliases=aliases,
        distractors=_distractors(relation.name, tuple(answers)),
    )


@functools.cache
def _rival_tokens(relation: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(
        (name, tuple(normalize_tokens(name)))
        for names in RELATIONS[relation].rivals()
        for name in names
    )


@functools.cache
def _distractors(relation: str, answers: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """Wrong answers that contain a right one: "Papua New Guinea" for Guinea, "West Virginia"
    for Virginia, "People's Republic of China" for Taiwan's "Republic of China". alias_match
    cuts them from an answer before it looks for an alias."""
    names = {name for group in answers for name in group}
    aliases = [tuple(normalize_tokens(name)) for name in names]
    return tuple(
        rival
        for rival, tokens in _rival_tokens(relation)
        if rival not in names
        and any(len(tokens) > len(a) and contains_span(tokens, a) for a in aliases if a)
    )


@functools.cache
def relation_pool(name: str, limit: int | None = None) -> tuple[FactQuestion, ...]:
    """A relation's questions, most popular subject first, at most ``limit``."""
    relation = RELATIONS[name]
    questions = [q for fact in relation.build() if (q := _question(relation, fact))]
    questions.sort(key=lambda q: (-q.popularity, q.question_id))
    return tuple(questions[:limit])


def _allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over the relations as evenly as their sizes allow (water filling)."""
    share = dict.fromkeys(sizes, 0)
    open_ = sorted(sizes, key=lambda name: (sizes[name], name))
    left = total
    while open_:
        each = left // len(open_)
        name = open_[0]
        if sizes[name] <= each:
            share[name] = sizes[name]
            left -= sizes[name]
            open_.pop(0)
            continue
        for index, name in enumerate(open_):
            share[name] = each + (index < left - each * len(open_))
        break
    return share


def _log_rank_draw(pool: tuple[FactQuestion, ...], k: int, rng: random.Random) -> list:
    """``k`` questions at log-spaced popularity ranks (1, 2, 4, ... n), so a small draw holds the
    head and the tail of the popularity distribution alike; ranks that coincide are filled by a
    random draw from the rest."""
    n = len(pool)
    ranks = {round(math.exp(i * math.log(n) / max(k - 1, 1))) - 1 for i in range(k)}
    rest = [r for r in range(n) if r not in ranks]
    ranks |= set(rng.sample(rest, k - len(ranks)))
    return [pool[r] for r in sorted(ranks)]


def _uniform_draw(pool: tuple[FactQuestion, ...], k: int, rng: random.Random) -> list:
    return rng.sample(pool, k)


SAMPLING = ("uniform", "log_rank")


def fact_questions(
    num_questions: int | None = DEFAULT_NUM_QUESTIONS,
    seed: int = 0,
    relations: list[str] | None = None,
    sampling: str = "uniform",
    max_rank: int | None = DEFAULT_MAX_RANK,
) -> list[FactQuestion]:
    """``num_questions`` questions (None: every one the mix holds), spread evenly over the
    relations, a seeded draw within each relation's ``max_rank`` most popular subjects
    (``uniform``: at random; ``log_rank``: at log-spaced popularity ranks), in a seeded random
    order."""
    names = check_relations(relations)
    if sampling not in SAMPLING:
        raise UserError(f"--sampling {sampling!r}: use one of {', '.join(SAMPLING)}")
    if num_questions is not None and num_questions < 1:
        raise UserError("--num_questions must be at least 1")
    if max_rank is not None and max_rank < 1:
        raise UserError("--max_rank must be at least 1 (null: every subject)")
    pools = {name: relation_pool(name, max_rank) for name in names}
    held = sum(map(len, pools.values()))
    if num_questions is not None and num_questions > held:
        raise UserError(
            f"--num_questions {num_questions} is more than the {held} questions the packages hold "
            f"for {', '.join(names)} at --max_rank {max_rank}; ask for at most {held}, or raise "
            "--max_rank"
        )
    share = _allocate({n: len(p) for n, p in pools.items()}, num_questions or held)
    rng = random.Random(seed)
    draw = _log_rank_draw if sampling == "log_rank" else _uniform_draw
    chosen = [q for name in names for q in draw(pools[name], share[name], rng)]
    rng.shuffle(chosen)
    return chosen


def fact_rows() -> list[dict]:
    """The default set (``--dataset facts``) as question-file rows."""
    return [question.row() for question in fact_questions()]


def write_questions(
    output: str | None = None,
    num_questions: int | None = DEFAULT_NUM_QUESTIONS,
    seed: int = 0,
    relations: list[str] | None = None,
    sampling: str = "uniform",
    max_rank: int | None = DEFAULT_MAX_RANK,
) -> None:
    """Write the fact question set as a JSONL question file.

    The rows have the local question-file fields plus ``relation``, ``subject`` and
    ``popularity`` (docs/EXTRACTION.md, "Fact questions").

    Args:
        output: The .jsonl file to write (required).
        num_questions: How many questions (spread evenly over the relations).
        seed: Seed of the draw within each relation and of the order.
        relations: Relations to ask about (default: every one but country_calling_code).
        sampling: ``uniform`` (a random draw within each relation) or ``log_rank`` (subjects at
            log-spaced popularity ranks: head and tail alike, for a pilot).
        max_rank: Ask about each relation's this many most popular subjects only (null: all).
    """
    if output is None:
        raise UserError("give the file to write: --output FILE.jsonl")
    path = Path(output)
    if path.suffix.lower() != ".jsonl":
        raise UserError(f"--output {output}: give a .jsonl file name")
    check_relations(relations)
    questions = fact_questions(num_questions, seed, relations, sampling, max_rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(q.row(), ensure_ascii=False) + "\n" for q in questions)
    path.write_text(text, encoding="utf-8")
    counts: dict[str, int] = {}
    for question in questions:
        counts[question.relation] = counts.get(question.relation, 0) + 1
    log.info("wrote %d questions to %s: %s", len(questions), path, counts)
