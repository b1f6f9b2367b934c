"""``python -m extraction estimate``: size an extraction before running it.

It takes the run's own options (``--config run.yaml`` works unchanged), reads the model's shapes
without loading its weights (``extraction.model_shapes``) and prints the bytes on disk and the
peak memory (``extraction.estimate``). When the model is on this machine (a packaged model or a
local folder) it also measures the prompt lengths with the model's tokenizer and times a short
real extraction of ``--timed_questions`` questions into a temporary store, which gives the time
and a check of the byte arithmetic against files actually written.
"""

from __future__ import annotations

import dataclasses
import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from common import UserError
from extraction import console
from extraction.checks import check_options
from extraction.config import ExtractionConfig
from extraction.estimate import (
    BatchSettings,
    DensityModel,
    LengthProfile,
    StoreLayout,
    density_model,
    peak_memory,
    reference_profile,
    store_bytes,
    weight_bytes,
)
from extraction.model_shapes import ModelShape, model_shape
from extraction.models import compute_dtype, quantization_name, resolve_source
from extraction.offline_model import PACKAGED_MODELS
from extraction.questions import Question, dataset_name, load_questions

LOCAL_DATASETS = ("demo",)
PROMPTS_MEASURED = 2000  # prompt lengths measured on at most this many questions


# The estimate's own options, after the run's (the attention format and W are the run's).
ESTIMATE_OPTIONS = (
    (
        "mean_tokens",
        float | None,
        None,
        "Mean prompt + answer tokens to assume (default: the prompts measured with the model's "
        "tokenizer, or the bundled demo run's lengths, with SmolLM2's answer lengths).",
    ),
    (
        "timed_questions",
        int,
        8,
        "Questions a local model extracts for real to measure the time (0: none).",
    ),
    (
        "attention_density",
        float | None,
        None,
        "With ``sparse``: the fraction of positions kept, instead of the density measured on "
        "SmolLM2's traces.",
    ),
)
_RUN_FIELDS = {field.name for field in dataclasses.fields(ExtractionConfig)}
_ADDED = [option for option in ESTIMATE_OPTIONS if option[0] not in _RUN_FIELDS]

EstimateConfig = dataclasses.make_dataclass(
    "EstimateConfig",
    [(name, kind, dataclasses.field(default=default)) for name, kind, default, _ in _ADDED],
    bases=(ExtractionConfig,),
)
EstimateConfig.__module__ = __name__
EstimateConfig.__doc__ = (ExtractionConfig.__doc__ or "").replace(
    "Extract final-state traces (hidden states + attentions over prompt + answer).",
    "Estimate the bytes on disk, the peak memory and the time of an extraction (the run's "
    "options; --config of a run works).",
) + "".join(f"    {name}: {text}\n    " for name, _, _, text in _ADDED)


def check_estimate_options(cfg: EstimateConfig) -> None:
    """The run's checks, and the estimate's own; nothing is loaded yet."""
    check_options(cfg)  # the attention format and W included
    if cfg.attention_format != "sparse" and cfg.attention_density is not None:
        raise UserError("--attention_density goes with --attention_format sparse")
    if cfg.attention_density is not None and not 0 < cfg.attention_density <= 1:
        raise UserError(f"--attention_density must be in (0, 1] (got {cfg.attention_density})")
    if cfg.attention_format == "sparse" and cfg.attention_density is None:
        density_model(cfg.min_attention)  # W outside the measured range: say so now
    if cfg.mean_tokens is not None and cfg.mean_tokens < 2:
        raise UserError(f"--mean_tokens must be at least 2 (got {cfg.mean_tokens})")
    if cfg.timed_questions < 0:
        raise UserError(f"--timed_questions must be 0 or more (got {cfg.timed_questions})")
    if cfg.num_samples is not None and cfg.num_samples < 1:
        raise UserError(f"--num_samples must be at least 1 (got {cfg.num_samples})")
    if cfg.num_samples is None and not _questions_are_local(cfg):
        raise UserError(
            f"--num_samples N is needed: the {cfg.dataset} questions are on the hub (or give "
            "--dataset_file)"
        )


def _questions_are_local(cfg: ExtractionConfig) -> bool:
    return cfg.dataset_file is not None or dataset_name(cfg.dataset, None) in LOCAL_DATASETS


def is_local(model: str) -> bool:
    """A model this machine has: a packaged one or a folder (a hub id is never fetched here)."""
    return model in PACKAGED_MODELS or Path(model).is_dir()


@dataclass
class TimedRun:
    seconds_per_question: float
    traces: int
    lengths: LengthProfile
    bytes_on_disk: int
    peak_rss: int


def run_estimate(cfg: EstimateConfig) -> None:
    from extraction.run import attention_blocks

    check_estimate_options(cfg)
    shape = model_shape(cfg.model, cfg.revision)
    blocks = attention_blocks(cfg.layers, shape.num_layers)
    questions = _questions(cfg)
    count = cfg.num_samples if questions is None else len(questions)
    profile = reference_profile()
    if is_local(cfg.model) and questions is not None:
        profile = profile.with_prompts(
            _prompt_lengths(cfg, questions[:PROMPTS_MEASURED]),
            f"{min(len(questions), PROMPTS_MEASURED)} prompts measured with the model's tokenizer",
        )
    timed = _timed_run(cfg) if is_local(cfg.model) and cfg.timed_questions else None
    if timed is not None:  # this model's own answers, with these decoding settings
        profile = profile.with_answers_like(timed.lengths)
    if cfg.mean_tokens is not None:
        profile = profile.scaled_to(cfg.mean_tokens)
    layout = _layout(cfg, shape, len(blocks))
    _report(cfg, shape, blocks, count, profile, layout, timed)


def _questions(cfg: EstimateConfig) -> list[Question] | None:
    if not _questions_are_local(cfg):
        return None
    name = dataset_name(cfg.dataset, cfg.dataset_file)
    return load_questions(name, cfg.dataset_file, cfg.num_samples, cfg.offset)


def _prompt_lengths(cfg: EstimateConfig, questions: list[Question]) -> list[int]:
    from transformers import AutoTokenizer

    from extraction.prompts import build_prompt, encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(cfg.model), revision=cfg.revision)
    return [
        len(
            encode_prompt(
                build_prompt(q.question, tokenizer, cfg.prompt_template, cfg.chat_template),
                tokenizer,
                cfg.chat_template,
            )
        )
        for q in questions
    ]


def _layout(cfg: EstimateConfig, shape: ModelShape, blocks: int) -> StoreLayout:
    density = None
    if cfg.attention_format == "sparse":
        density = cfg.attention_density or density_model(cfg.min_attention)
    itemsize = getattr(torch, cfg.dtype).itemsize
    return StoreLayout(blocks, shape.num_heads, shape.hidden_size, itemsize, density)


def _timed_run(cfg: EstimateConfig) -> TimedRun | None:
    """Extract ``timed_questions`` questions for real into a temporary store."""
    from extraction.run import run_extraction
    from extraction.store import TraceStore

    if cfg.device and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        console.say("(no timed run: --device cuda, and this machine has no CUDA GPU)")
        return None
    settings = {key: value for key, value in vars(cfg).items() if key in _RUN_FIELDS}
    with tempfile.TemporaryDirectory(prefix="estimate-") as folder:
        local = _questions_are_local(cfg)
        settings.update(
            num_samples=cfg.timed_questions,
            offset=cfg.offset if local else 0,
            dataset=cfg.dataset if local else None,
            dataset_file=cfg.dataset_file if local else None,
            output_dir=str(Path(folder) / "store"),
            overwrite=False,
            retry_errors=False,
            verbose=False,
        )
        console.say(f"Timed run: {cfg.timed_questions} questions into a temporary store...")
        result = run_extraction(ExtractionConfig(**settings))
        store = TraceStore(result.store_dir)
        if not store.question_ids:
            console.say("(the timed run wrote no trace: no time measured)")
            return None
        rows = [store.rows[qid] for qid in store.question_ids]
        pairs = tuple((row.n_prompt_tokens, row.n_answer_tokens) for row in rows)
        on_disk = sum(path.stat().st_size for path in store.shard_files)
        on_disk += (store.root / "index.jsonl").stat().st_size
    return TimedRun(
        # A question yields num_generations traces (or error rows).
        seconds_per_question=result.extract_seconds
        * cfg.num_generations
        / (result.processed + result.errors),
        traces=len(rows),
        lengths=LengthProfile(pairs, f"the timed run's {len(rows)} answers"),
        bytes_on_disk=on_disk,
        peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


def _report(
    cfg: EstimateConfig,
    shape: ModelShape,
    blocks: list[int],
    count: int,
    profile: LengthProfile,
    layout: StoreLayout,
    timed: TimedRun | None,
) -> None:
    say = console.say
    say(f"Estimate for {cfg.model}: {shape.description}")
    if cfg.num_samples is not None and count < cfg.num_samples:
        say(f"(--num_samples {cfg.num_samples}, but the questions given hold {count})")
    say(
        f"Questions: {count}; sequence: mean {profile.mean_tokens:.1f} tokens (prompt "
        f"{profile.mean_prompt:.1f} + answer {profile.mean_answer:.1f}; {profile.source})"
    )
    kept = "all" if len(blocks) == shape.num_layers else f"{len(blocks)} of {shape.num_layers}"
    attention = "dense" if layout.density is None else f"sparse, W = {cfg.min_attention}"
    say(
        f"Kept: {kept} blocks' attention ({attention}) and {len(blocks) + 1} hidden states, "
        f"in {cfg.dtype}"
    )
    if layout.density is not None:
        typical = round(profile.mean_tokens)
        fraction = layout.kept_fraction(typical)
        if not isinstance(layout.density, DensityModel):
            origin = "given (--attention_density)"
        elif shape.num_heads > layout.density.reference_heads:
            origin = (
                f"measured on SmolLM2-135M's traces ({layout.density.reference_heads} heads), "
                f"extrapolated to {shape.num_heads} heads"
            )
        else:
            origin = f"measured on SmolLM2-135M's traces, for {shape.num_heads} heads"
        say(f"  sparse: {fraction:.1%} of positions kept at {typical} tokens ({origin})")
    traces = count * cfg.num_generations
    if cfg.num_generations > 1:
        say(f"Generations per question: {cfg.num_generations} ({traces} traces)")
    parts = store_bytes(layout, profile, traces)
    total = sum(parts.values())
    say(f"\nBytes on disk: {_size(total)} ({_size(total / traces)} a trace)")
    for part, size in parts.items():
        say(f"  {part.replace('_', ' '):<26} {_size(size):>10}  {size / total:6.1%}")

    cuda = cfg.device.startswith("cuda") if cfg.device else torch.cuda.is_available()
    quantization = quantization_name(cfg.quantization, shape.prequantized, cuda)
    dtype = compute_dtype(cfg.torch_dtype, cuda)
    batch = BatchSettings(cfg.batch_size, cfg.num_beams, cfg.max_new_tokens, dtype.itemsize)
    weights = weight_bytes(shape, quantization, dtype.itemsize)
    memory = peak_memory(shape, weights, batch, profile, layout, cuda)
    device = "CUDA" if cuda else "CPU"
    weights_as = {
        "none": str(dtype).removeprefix("torch."),
        "4bit": "4-bit NF4",
        "8bit": "8-bit",
        "prequantized": "pre-quantized, counted as 4-bit",
    }
    say(
        f"\nPeak memory on {device}: {_gib(memory['peak'])} (weights + the larger of generation "
        f"and the final pass), batch {cfg.batch_size} × {cfg.num_beams} beams, longest sequence "
        f"{profile.longest[1]} tokens"
    )
    say(f"  {'weights (' + weights_as[quantization] + ')':<26} {_gib(weights):>10}")
    say(
        f"  {'generation':<26} {_gib(memory['generation']):>10}  (key/value cache "
        f"{_gib(memory['kv_cache'])})"
    )
    packed = "" if cuda else f", the batch's packed traces {_gib(memory['packed_batch'])}"
    say(
        f"  {'final pass':<26} {_gib(memory['final_pass']):>10}  (hidden states "
        f"{_gib(memory['hidden_states'])}, one block's attention "
        f"{_gib(memory['one_block_attention'])}, answer logits {_gib(memory['logits'])}{packed})"
    )
    if cuda:
        say(
            f"  plus the CUDA context (~0.5 GiB) and the allocator's slack; in host memory, the "
            f"batch's packed traces: {_gib(memory['host'])}"
        )

    if timed is None:
        if not is_local(cfg.model):
            reason = "the model is not on this machine"
        elif cfg.timed_questions == 0:
            reason = "--timed_questions 0"
        else:
            reason = "no timed run, see above"
        say(f"\nTime: not measured ({reason}); docs/SCALING.md projects GPU time")
        return
    hours = timed.seconds_per_question * count / 3600
    timed_questions = timed.traces // cfg.num_generations
    say(
        f"\nTime: {hours:.2f} h for {count} questions in one process "
        f"({timed.seconds_per_question:.2f} s a question, measured on {timed_questions} questions, "
        f"batch {cfg.batch_size}, model loading excluded); with N processes, about 1/N of it"
    )
    computed = sum(store_bytes(layout, timed.lengths, timed.traces).values())
    say(
        f"  the timed run wrote {_size(timed.bytes_on_disk / timed.traces)} a trace; the "
        f"arithmetic gives {_size(computed / timed.traces)} for its lengths; peak RSS of this "
        f"process (libraries included) {_gib(timed.peak_rss)}"
    )


def _size(size: float) -> str:
    """Bytes on disk, decimal units (what disks are sold in)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size:.0f} B"


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB"
