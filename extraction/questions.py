"""Question sources: the hub datasets of the seed, local files with the same fields, and the
bundled ``demo`` set. Every source goes through the same row normaliser, so a local copy of
TriviaQA or TruthfulQA is read exactly as the hub rows would be."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from common import UserError
from extraction.facts import fact_rows

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "data"
BUNDLED = {"demo": BUNDLED_DIR / "demo_questions.jsonl"}
# Sets built in memory from pinned packages (``python -m extraction questions NAME`` writes them).
GENERATED = {"facts": fact_rows}
HUB = {
    "triviaqa": ("mandarjoshi/trivia_qa", "rc.nocontext", "validation"),
    "truthfulqa": ("truthful_qa", "generation", "validation"),
}
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
LIST_FIELDS = (
    "aliases",
    "normalized_aliases",
    "distractors",
    "correct_answers",
    "incorrect_answers",
)
# What a question is about (the fact set's): kept beside the gold answers, so a store's index
# rows carry them (``row.gold["relation"]``).
ABOUT_FIELDS = ("relation", "subject", "popularity")


@dataclass(frozen=True)
class Question:
    question_id: str
    question: str
    gold: dict = field(default_factory=dict)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]*")


def check_name(name: str, what: str) -> str:
    """A name that becomes part of a file or directory name: letters, digits, spaces, ``._+-``,
    no separators, no leading dot (so never ``..``, never a path outside the output folder)."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(
            f"{what} {name!r} cannot name files: use letters, digits, spaces and . _ + - only, "
            "starting with a letter or digit (no / or ..)"
        )
    return name


def dataset_name(dataset: str | None, dataset_file: str | None) -> str:
    """The run's dataset name (used in file names): explicit, else the file's stem, else demo."""
    if dataset:
        return check_name(dataset, "--dataset")
    if dataset_file:
        return check_name(Path(dataset_file).stem, f"the stem of --dataset_file {dataset_file}")
    return "demo"


def load_questions(
    dataset: str | None = None,
    dataset_file: str | None = None,
    num_samples: int | None = None,
    offset: int = 0,
) -> list[Question]:
    """Questions ``offset .. offset + num_samples`` of the source (``None`` = to the end).

    Ids come from a ``question_id`` field, else from the row index in the whole source
    (``truthfulqa_{idx}``), so a slice never renumbers questions.
    """
    if num_samples is not None and num_samples < 1:
        raise UserError("--num_samples must be at least 1 (omit it to take every question)")
    if offset < 0:
        raise UserError("--offset must be 0 or more")
    name = dataset_name(dataset, dataset_file)
    rows, origin = _rows(name, dataset_file)
    stop = None if num_samples is None else offset + num_samples
    questions = []
    for index in range(offset, len(rows) if stop is None else min(stop, len(rows))):
        questions.append(_question(rows[index], index, name, origin))
    if not questions:
        raise UserError(f"{origin} has no questions at --offset {offset}")
    _check_unique(questions, offset, origin)
    return questions


def _check_unique(questions: list[Question], offset: int, origin: str) -> None:
    """Two rows with one id would share one trace slot: refuse, naming the rows."""
    rows: dict[str, list[int]] = {}
    for position, question in enumerate(questions, start=offset):
        rows.setdefault(question.question_id, []).append(position)
    repeated = {qid: where for qid, where in rows.items() if len(where) > 1}
    if repeated:
        shown = "; ".join(
            f"{qid!r} in rows {', '.join(map(str, where))}"
            for qid, where in list(repeated.items())[:5]
        )
        more = f" (and {len(repeated) - 5} more)" if len(repeated) > 5 else ""
        raise UserError(
            f"{origin} repeats question ids: {shown}{more}; give every row its own question_id"
        )


def _rows(name: str, dataset_file: str | None):
    import datasets

    datasets.disable_progress_bars()
    # Parse failures are reported once, by us, as one line; not also by the datasets logger.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    if dataset_file is not None:
        return _file_rows(Path(dataset_file)), dataset_file
    if name in BUNDLED:
        return _file_rows(BUNDLED[name]), f"bundled {name} set"
    if name in GENERATED:
        return GENERATED[name](), f"generated {name} set"
    if name not in HUB:
        choices = ", ".join([*BUNDLED, *GENERATED, *HUB])
        raise UserError(f"unknown dataset {name!r}: use one of {choices}, or --dataset_file PATH")
    path, config, split = HUB[name]
    try:
        return datasets.load_dataset(path, config, split=split), f"{path} ({config}, {split})"
    except Exception as exc:  # the hub raises many types (connection, auth, missing config)
        raise UserError(
            f"cannot load {path} from the Hugging Face hub ({type(exc).__name__}); without "
            f"network, pass a local copy with --dataset_file"
        ) from None


def _file_rows(path: Path):
    import datasets

    if not path.exists():
        raise UserError(
            f"dataset file {path} does not exist (looked for {path.resolve()}: relative paths, in "
            "configs too, are read from the current directory)"
        )
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise UserError(f"{path}: use a .jsonl, .json, .csv or .parquet file")
    try:
        rows = datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps parser errors in several exception types
        cause = exc.__cause__ or exc
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        raise UserError(
            f"cannot read {path} as {builder} ({detail}); check that it is valid {builder} with "
            "one question per row"
        ) from None
    rows = rows.rename_columns({c: _column(c) for c in rows.column_names if _column(c) != c})
    if "question" not in rows.column_names:
        raise UserError(
            f"{path} has no 'question' field (columns: {', '.join(rows.column_names)}); "
            "each row needs a question"
        )
    return rows


def _column(name: str) -> str:
    """TruthfulQA's CSV headers ('Best Answer', BOM on the first) → the hub's field names."""
    return name.lstrip("\ufeff").strip().lower().replace(" ", "_")


def _question(row: dict, index: int, dataset: str, origin: str) -> Question:
    text = row.get("question")
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"row {index} of {origin} has an empty question; fix or remove it")
    question_id = row.get("question_id") or f"{dataset}_{index}"
    return Question(str(question_id), text.strip(), _gold(row))


def _gold(row: dict) -> dict:
    """Gold answers in one shape: TriviaQA nests them under ``answer``; TruthfulQA's CSV keeps
    lists as '; '-separated strings."""
    source = dict(row.get("answer") or {})
    for key in ("aliases", "best_answer", "correct_answers", "incorrect_answers"):
        if row.get(key) is not None:
            source[key] = row[key]
    gold = {}
    for key in (*LIST_FIELDS, "best_answer"):
        value = source.get(key)
        if value is None:
            continue
        if key in LIST_FIELDS and isinstance(value, str):
            value = [part.strip() for part in value.split("; ") if part.strip()]
        gold[key] = value if isinstance(value, str) else [str(v) for v in value]
    gold.update({key: row[key] for key in ABOUT_FIELDS if row.get(key) is not None})
    return gold
