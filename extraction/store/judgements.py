"""Judged answers: labels from outside (people, a big LLM elsewhere), tied to the answer text.

A judgement file is JSONL, one row per judged answer::

    {"question_id": "truthfulqa_0", "model": "smollm2_135M", "answer_sha256": "<hex>",
     "label": 1, "reason": "asserts X; in fact Y", "judge": "lead-panel"}

``answer_sha256`` is :func:`answer_sha256` of the answer the judge read (the store's
``generated_answer_clean``). A judgement is applied to a trace only when both the question id and
that hash match, so it never lands on a different answer (another model, another decoding, a
re-run). A row may also hold the ``answer`` text itself; its hash is then checked. Judgements of
this project's stores ship with the package under
``extraction/data/judgements/<model>_<dataset>.jsonl``; see docs/LABELS.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common import UserError, shown_path
from extraction.store.contract import Label

if TYPE_CHECKING:
    from extraction.store import IndexRow

JUDGEMENT_FIELDS = ("question_id", "model", "answer_sha256", "label", "reason", "judge")
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "data" / "judgements"
EXTERNAL_PREFIX = "external:"
log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def answer_sha256(answer: str) -> str:
    """The hash that ties a judgement to one answer text (UTF-8, exactly as stored)."""
    return hashlib.sha256(answer.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Judgement:
    question_id: str
    model: str
    answer_sha256: str
    label: int
    reason: str
    judge: str
    answer: str | None = None  # optional: the judged text itself (the packaged files have it)

    @property
    def method(self) -> str:
        return f"{EXTERNAL_PREFIX}{self.judge}"


def _parse_line(path: Path, number: int, line: str) -> Judgement:
    where = f"{path} line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{where} is not JSON ({err.msg}); a judgement file is JSONL") from None
    if not isinstance(row, dict):
        raise UserError(f"{where} is not a JSON object; a judgement file is JSONL of objects")
    if missing := [key for key in JUDGEMENT_FIELDS if key not in row]:
        raise UserError(f"{where} lacks {', '.join(missing)}; each row needs {JUDGEMENT_FIELDS}")
    if row["label"] not in (0, 1) or isinstance(row["label"], bool):
        raise UserError(f"{where}: label must be 1 (hallucinated) or 0, not {row['label']!r}")
    if not (isinstance(row["answer_sha256"], str) and _SHA256.fullmatch(row["answer_sha256"])):
        raise UserError(f"{where}: answer_sha256 must be 64 lowercase hex digits (sha256)")
    for key in ("question_id", "model", "judge"):
        if not isinstance(row[key], str) or not row[key].strip():
            raise UserError(f"{where}: {key} must be a non-empty string")
    if not isinstance(row["reason"], str):
        raise UserError(f"{where}: reason must be a string")
    answer = row.get("answer")
    if answer is not None and answer_sha256(str(answer)) != row["answer_sha256"]:
        raise UserError(f"{where}: answer_sha256 is not the sha256 of its answer text")
    return Judgement(**{key: row[key] for key in JUDGEMENT_FIELDS}, answer=answer)


def read_judgements(path: str | Path) -> list[Judgement]:
    """Every judgement of a file; a one-line :class:`UserError` for a file that is not one.

    The same answer (question id and hash) judged twice must carry the same label.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"judgement file {shown_path(path)} not found")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): U+2028 in text
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; a judgement file is JSONL") from None
    judgements = [
        _parse_line(path, number, line) for number, line in enumerate(lines, 1) if line.strip()
    ]
    if not judgements:
        raise UserError(f"judgement file {path} holds no judgements")
    seen: dict[tuple[str, str], int] = {}
    for j in judgements:
        key = (j.question_id, j.answer_sha256)
        if seen.setdefault(key, j.label) != j.label:
            raise UserError(
                f"{path}: {j.question_id} is judged both 0 and 1 for the same answer; keep one"
            )
    return judgements


@dataclass
class MatchResult:
    """``labels``: the matched traces' labels. ``unmatched``: judgements applied to no trace, each
    with the reason. ``unjudged``: the store's answers no judgement matched."""

    labels: dict[str, Label] = field(default_factory=dict)
    unmatched: list[tuple[Judgement, str]] = field(default_factory=list)
    unjudged: list[str] = field(default_factory=list)

    def report(self, limit: int = 5) -> list[str]:
        """Lines for the user: what did not match, a few examples of each."""
        lines = []
        if self.unmatched:
            lines.append(f"{len(self.unmatched)} judgements matched no answer of the store:")
            lines += [f"  {j.question_id}: {why}" for j, why in self.unmatched[:limit]]
            if len(self.unmatched) > limit:
                lines.append(f"  ... and {len(self.unmatched) - limit} more")
        if self.unjudged:
            shown = ", ".join(self.unjudged[:limit])
            more = f" and {len(self.unjudged) - limit} more" if len(self.unjudged) > limit else ""
            lines.append(f"{len(self.unjudged)} answers have no judgement: {shown}{more}")
        return lines


def match_judgements(rows: dict[str, IndexRow], judgements: list[Judgement]) -> MatchResult:
    """Match judgements to index rows by question id and answer-text hash; never guess."""
    result = MatchResult()
    for j in judgements:
        row = rows.get(j.question_id)
        if row is None:
            result.unmatched.append((j, "no such question in the store"))
        elif not row.ok:
            result.unmatched.append((j, "the store has no answer for it (an error row)"))
        elif answer_sha256(row.generated_answer_clean) != j.answer_sha256:
            result.unmatched.append((j, "a different answer text (hash differs)"))
        else:
            result.labels[j.question_id] = Label(j.label, j.method, None)
    result.unjudged = [qid for qid, row in rows.items() if row.ok and qid not in result.labels]
    return result


def packaged_judgements(model: str, dataset: str) -> Path:
    """The packaged judgement file of a model's answers to a dataset, or a one-line error."""
    path = PACKAGED_DIR / f"{model}_{dataset}.jsonl"
    if not path.is_file():
        available = sorted(p.stem for p in PACKAGED_DIR.glob("*.jsonl"))
        raise UserError(
            f"no packaged judgements for {model} on {dataset}; packaged: "
            f"{', '.join(available) or 'none'}. Pass a judgement file instead"
        )
    return path


@dataclass(frozen=True)
class LabelSource:
    """The labels a detector run trains and is scored on, and what they are, for its reports.

    ``labels``: every answer of the store, None where it has no label. ``name``: ``index`` (the
    labels stored in the store's index) or the judgement file. ``methods``: the label methods
    (``external:<judge>`` for judgements) behind the labels.
    """

    labels: dict[str, int | None]
    name: str
    methods: tuple[str, ...]

    def describe(self) -> str:
        n = sum(label is not None for label in self.labels.values())
        return f"{self.name} [{', '.join(self.methods)}] ({n}/{len(self.labels)} labelled)"


def label_source(store, source: str | None = None) -> LabelSource:
    """The labels of a :class:`~extraction.store.TraceStore`'s answers from ``source``:
    ``None``/``"index"`` for the stored labels, ``"judged"`` for the packaged judgements of the
    store's model and dataset, or a judgement file (matched by question id and answer hash;
    answers without a judgement get no label)."""
    if source in (None, "index"):
        rows = [store.rows[qid] for qid in store.question_ids]
        methods = sorted({str(row.label_method) for row in rows if row.label is not None})
        labels = {row.question_id: row.label for row in rows}
        return LabelSource(labels, "index", tuple(methods))
    if source == "judged":
        settings = store.manifest.settings
        path = packaged_judgements(settings.model, settings.dataset)
    else:
        path = Path(source)
    match = match_judgements(store.rows, read_judgements(path))
    if not match.labels:
        raise UserError(f"no judgement in {path} matches an answer of {store.root} (hash or id)")
    for line in match.report():
        log.warning("%s: %s", path.name, line)
    labels = {qid: getattr(match.labels.get(qid), "label", None) for qid in store.question_ids}
    methods = sorted({label.method for label in match.labels.values()})
    return LabelSource(labels, str(path), tuple(methods))
