"""The store's schema, as the later stages see it: the manifest, an index row, a trace's record.

Frozen dataclasses built from the JSON the writer wrote. Fields an older writer did not write
default to None (or empty), so every store written so far reads; a field a stage cannot do
without is required, and its absence is a one-line error naming the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from common import UserError, check_name

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")
# Settings keys renamed since (issue 22: block wherever a transformer block is meant).
OLD_SETTINGS_NAMES = {"attention_layers": "attention_blocks"}


@dataclass(frozen=True)
class Label:
    """``label``: 1 hallucinated (wrong), 0 correct, None when there is no gold answer to judge by.

    ``score`` is the number the decision was made from; its meaning depends on ``method``.
    """

    label: int | None
    method: str
    score: float | None


def without_none(value: Any) -> Any:
    """JSON values with every None-valued key left out, tuples as lists: how the manifest is
    written and compared (a key an older writer did not write reads as None)."""
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [without_none(item) for item in value]
    return value


def new_settings_names(settings: dict) -> dict:
    """``manifest.settings`` with the keys a store written before issue 22 has under their old
    names (``attention_layers``) renamed, so old and new stores read and compare alike."""
    renamed = dict(settings)
    for old, new in OLD_SETTINGS_NAMES.items():
        if old in renamed:
            renamed.setdefault(new, renamed.pop(old))
    return renamed


def _build(cls: type[T], data: Any, where: str, **nested: Any) -> T:
    """``cls`` from a JSON object: unknown keys ignored (a newer writer's), lists as tuples,
    required fields checked; ``nested`` holds the already-built values of nested objects."""
    _check_object(data, where)
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name in nested:
            values[spec.name] = nested[spec.name]
        elif spec.name in data:
            value = data[spec.name]
            values[spec.name] = tuple(value) if isinstance(value, list) else value
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise UserError(
                f"{where} lacks {spec.name!r}: not written by `python -m extraction`, or damaged"
            )
    return cls(**values)


def _check_object(data: Any, where: str) -> None:
    if data is None:
        raise UserError(f"{where} is missing: not written by `python -m extraction`, or damaged")
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(data).__name__}")


@dataclass(frozen=True)
class ModelInfo:
    """The model's sizes (``manifest.model``)."""

    num_layers: int
    num_heads: int
    hidden_size: int
    vocab_size: int | None = None
    architecture: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Decoding:
    """How the answers were generated (``manifest.settings.decoding``)."""

    num_beams: int | None = None
    do_sample: bool | None = None
    max_new_tokens: int | None = None
    early_stopping: bool | None = None
    stop_strings: tuple[str, ...] = ()
    num_generations: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None

    @property
    def generations(self) -> int:
        """Traces per question (stores written before ``--num_generations`` have one)."""
        return self.num_generations or 1


@dataclass(frozen=True)
class RunSettings:
    """What identifies a run (``manifest.settings``): a resume with other settings is refused.

    ``attention_blocks`` are the blocks whose attention was stored (``attention_layers`` in
    stores written before issue 22), ``hidden_state_layers`` the indices into the seed's
    ``hidden_states`` (0 the embeddings, ``l + 1`` the output of block ``l``).
    ``attention_format`` ``sparse`` keeps only the attention at positions where some head of
    the block reaches ``min_attention`` (:mod:`extraction.store.sparse`); older stores are
    ``dense``."""

    model: str
    dataset: str
    attention_blocks: tuple[int, ...]
    hidden_state_layers: tuple[int, ...]
    model_source: str | None = None
    revision: str | None = None
    quantization: str | None = None
    torch_dtype: str | None = None
    storage_dtype: str | None = None
    prompt_template: str | None = None
    chat_template: bool | None = None
    decoding: Decoding = field(default_factory=Decoding)
    dataset_file: str | None = None
    attention_format: str = "dense"
    min_attention: float | None = None

    @property
    def file_prefix(self) -> str:
        """``{model}_{dataset}``, the start of the run's shard names (the seed's naming)."""
        return run_file_prefix(self.model, self.dataset)


@dataclass(frozen=True)
class Requested:
    """The questions the latest run was asked for (stores before it have none)."""

    question_ids: tuple[str, ...] = ()
    sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``, e.g. ``store.manifest.model.hidden_size``."""

    settings: RunSettings
    model: ModelInfo
    format: str | None = None
    requested: Requested = field(default_factory=Requested)
    created: str | None = None
    python: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str | Path = "manifest.json") -> Manifest:
        where = str(where)
        _check_object(data, where)
        settings = data.get("settings")
        _check_object(settings, f"{where} settings")
        settings = new_settings_names(settings)
        decoding = _build(Decoding, settings.get("decoding") or {}, f"{where} settings.decoding")
        return _build(
            cls,
            data,
            where,
            settings=_build(RunSettings, settings, f"{where} settings", decoding=decoding),
            model=_build(ModelInfo, data.get("model"), f"{where} model"),
            requested=_build(Requested, data.get("requested") or {}, f"{where} requested"),
        )

    def __post_init__(self) -> None:
        # Both name files (shards, pickles, judgements): checked like the CLI's --dataset, so a
        # crafted manifest cannot point a path outside the store.
        check_name(str(self.settings.dataset), "the manifest's dataset")
        check_name(Path(str(self.settings.model).rstrip("/")).name, "the manifest's model")

    def to_json(self) -> dict:
        """``manifest.json``'s object: what :meth:`from_json` reads back as this manifest (a
        field that is None is left out; reading it back gives None again)."""
        return without_none(dataclasses.asdict(self))


@dataclass(frozen=True)
class IndexRow:
    """One line of ``index.jsonl``: a question's status, where its trace is, its label.

    An error row (``status == "error"``) has no trace: its answer and length fields are None.
    ``label`` is 1 for a hallucinated answer, 0 for a correct one, None when unlabelled.
    In a store of several generations per question (``--num_generations K``), ``question_id``
    is the trace's own id, ``{source_question_id}#{generation}``: generation 0 is the beam-search
    answer, 1..K-1 the samples. With one generation the trace id is the question id,
    ``source_question_id`` is None and ``generation`` 0."""

    question_id: str
    status: str
    question: str = ""
    gold: dict = field(default_factory=dict)
    error: str | None = None
    shard: str | None = None
    generated_answer_clean: str | None = None
    answer_end: str | None = None
    n_prompt_tokens: int | None = None
    n_answer_tokens: int | None = None
    seq_len: int | None = None
    label: int | None = None
    label_method: str | None = None
    label_score: float | None = None
    shard_sha256: str | None = None
    shard_bytes: int | None = None
    trace_sha256: str | None = None
    source_question_id: str | None = None
    generation: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def unit(self) -> str:
        """The question this trace answers (its own id unless it is one of several generations)."""
        return self.source_question_id or self.question_id

    @classmethod
    def from_json(cls, data: Any, where: str = "index row") -> IndexRow:
        return _build(cls, data, where)

    def to_json(self) -> dict:
        """The row as written; a one-generation trace's row as before ``generation`` existed."""
        data = dataclasses.asdict(self)
        if self.source_question_id is None:
            del data["generation"]
        return data


@dataclass(frozen=True)
class TraceRecord:
    """A trace's metadata in its shard's header: its tokens as text, which layers it holds and,
    for a sampling run, the other sampled answers (none yet: no extraction writes them)."""

    tokens_decoded: tuple[str, ...]
    n_prompt_tokens: int
    hidden_state_indices: tuple[int, ...]
    attention_indices: tuple[int, ...]
    sampled_answers: tuple[str, ...] = ()
    # Tensor key → sha256 (integrity.tensor_sha256); empty in stores written before it.
    tensor_sha256: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str = "trace record") -> TraceRecord:
        return _build(cls, data, where)


@dataclass(frozen=True)
class Consistency:
    """What the sampling detectors need about a question's K answers, computed from the store
    (no model): ``python -m extraction`` writes one per question into ``consistency.safetensors``.

    ``trace_ids`` and ``answers`` are the question's ok traces in generation order (generation 0,
    the beam-search answer, first); ``answer_embeddings [K, 384]`` their L2-normalised MiniLM
    embeddings (``extraction.sentence_embeddings``); ``lexical_similarity [K, K]`` the ROUGE-L F
    of answer j against answer i (``extraction.rougeL_similarities``; symmetric, 1 on the
    diagonal); ``eigen_hidden [K, hidden]`` the INSIDE/EigenScore sentence embedding: the
    output of block ``eigen_block`` (the model's middle block, hidden-state index
    ``(num_layers + 1) // 2``, or the stored block nearest to it) at each trace's last token
    (the answer's last, EOS included), float32."""

    question_id: str
    trace_ids: tuple[str, ...]
    answers: tuple[str, ...]
    answer_embeddings: Tensor
    lexical_similarity: Tensor
    eigen_hidden: Tensor
    eigen_block: int

    @property
    def num_generations(self) -> int:
        return len(self.trace_ids)


@dataclass(frozen=True)
class AnswerStats:
    """Per answer token ``[n_answer]``: the log-probability of the chosen token and the entropy
    (nats) of the distribution it was chosen from."""

    logprobs: Tensor
    entropy: Tensor


def trace_id(question_id: str, generation: int, num_generations: int) -> str:
    """A trace's id: the question id itself in a one-generation store, else
    ``{question_id}#{generation}``."""
    return question_id if num_generations == 1 else f"{question_id}#{generation}"


def run_file_prefix(model: str, dataset: str) -> str:
    """``{model}_{dataset}`` (a model path counts by its last part)."""
    return f"{Path(str(model).rstrip('/')).name}_{dataset}"
