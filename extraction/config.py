"""Settings of an extraction run. Every field is a flag and a key of the YAML given to
``--config`` with one spelling (``num_samples`` ↔ ``--num_samples``; the seed's ``--num-samples``
works too), and its help is the ``Args:`` entry below (:mod:`common.dialect`); see
``configs/extraction/default.yaml``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from extraction.generation import DEFAULT_STOP_STRINGS, Decoding, Sampling
from extraction.models import OFFLINE_MODEL, storage_dtype
from extraction.prompts import SEED_PROMPT

STORAGE_DTYPES = ("float16", "bfloat16", "float32")


@dataclass
class ExtractionConfig:
    """Extract final-state traces (hidden states + attentions over prompt + answer).

    Args:
        model: Registry id (``HF_NAMES``), hub id or local folder; the default is the packaged
            offline SmolLM2-135M-Instruct.
        dataset: ``demo`` (bundled), ``triviaqa`` or ``truthfulqa``; with ``dataset_file`` it
            only names the run (default: the file's stem).
        dataset_file: Local JSONL/CSV/Parquet with the hub's fields (question, answer aliases or
            correct/incorrect answers).
        num_samples: How many questions (None = all).
        offset: Index of the first question to take.
        output_dir: Store directory (default ``traces_data/{model}_{dataset}``).
        prompt_template: Prompt with a ``{question}`` slot (default: the seed's).
        chat_template: Wrap the prompt in the tokenizer's chat template.
        num_beams: Beam width (1 = greedy).
        max_new_tokens: Longest answer, in tokens.
        early_stopping: Stop beam search once ``num_beams`` finished candidates exist.
        stop_strings: The answer ends before the first of these (after it has started).
        num_generations: Answers (traces) per question: generation 0 is the beam-search answer,
            1..K-1 are sampled (needs ``do_sample``). With K > 1 a trace's id is
            ``{question_id}#{generation}``.
        do_sample: Sample generations 1..K-1 (multinomial, ``temperature``, ``top_p``).
        temperature: Sampling temperature (> 0; the default 0.5 is INSIDE/EigenScore's).
        top_p: Nucleus sampling: keep the smallest set of tokens whose probability reaches this
            (0 < top_p <= 1; 1 keeps all; the default 0.99 is INSIDE's).
        seed: Seed of the samples; each question's are drawn from this and its id, so a resume
            draws the same ones.
        batch_size: Questions generated and traced together.
        max_total_tokens: Questions whose prompt plus ``max_new_tokens`` exceed this are recorded
            as errors instead of run.
        quantization: ``auto`` (4-bit NF4 on CUDA, none on CPU), ``4bit``, ``8bit`` or ``none``.
        torch_dtype: Compute dtype: ``auto`` (float16 on CUDA, float32 on CPU) or a dtype name.
        revision: Hub revision (branch, tag or commit) of the model.
        device: ``cpu``, ``cuda``, ``cuda:1``... (default: CUDA when available).
        dtype: Storage dtype of hidden states and attentions (default: the model's safe one
            from the registry, ``bfloat16`` for Gemma-3, else ``float16``; a dtype the model is
            known to overflow is refused before it loads).
        attention_format: ``dense`` (every weight of the lower triangle) or ``sparse`` (only
            where some head of the block reaches ``min_attention``, plus the diagonal; graphs
            then need a threshold >= it).
        min_attention: With ``attention_format: sparse``, the smallest weight kept (e.g. 0.01).
        layers: Block indices to keep (None = all): attention of block l and hidden state l+1,
            plus the embedding output (hidden state 0).
        shard_size: Traces per shard file (the seed's 500).
        shard_max_mb: A shard is also closed once its tensors reach this many MiB.
        overwrite: Delete an existing run in ``output_dir`` and start over.
        retry_errors: On resume, run again the questions that failed before.
        label_method: Labelling method (None = the dataset's default).
        verbose: Print every example, as the seed did.
    """

    model: str = OFFLINE_MODEL
    dataset: str | None = None
    dataset_file: str | None = None
    num_samples: int | None = None
    offset: int = 0
    output_dir: str | None = None
    prompt_template: str = SEED_PROMPT
    chat_template: bool = False
    num_beams: int = 5
    max_new_tokens: int = 64
    early_stopping: bool = True
    stop_strings: list[str] = field(default_factory=lambda: list(DEFAULT_STOP_STRINGS))
    num_generations: int = 1
    do_sample: bool = False
    temperature: float = 0.5
    top_p: float = 0.99
    seed: int = 0
    batch_size: int = 8
    max_total_tokens: int = 1024
    quantization: str = "auto"
    torch_dtype: str = "auto"
    revision: str | None = None
    device: str | None = None
    dtype: str | None = None
    attention_format: str = "dense"
    min_attention: float | None = None
    layers: list[int] | None = None
    shard_size: int = 500
    shard_max_mb: int = 1024
    overwrite: bool = False
    retry_errors: bool = False
    label_method: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.dtype is None or self.dtype in STORAGE_DTYPES:
            self.dtype = storage_dtype(self.model, self.dtype)

    @property
    def decoding(self) -> Decoding:
        return Decoding(self.num_beams, self.max_new_tokens, self.early_stopping)

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_p, self.max_new_tokens, self.seed)

    def store_dir(self, dataset: str) -> Path:
        return Path(self.output_dir or Path("traces_data") / f"{self.model_slug}_{dataset}")

    @property
    def model_slug(self) -> str:
        """The model's name as it appears in file names (a path or hub id → its last part)."""
        return Path(self.model.rstrip("/")).name

    def as_dict(self) -> dict:
        return asdict(self)
