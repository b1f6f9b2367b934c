"""The extraction run: questions → answers → final-state traces → labelled store.

Resumable: questions already in the store's index are skipped. A question that fails is
recorded with its reason and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from tqdm.auto import tqdm

from extraction import console
from extraction.checks import check_options, check_output_dir, check_same_questions
from extraction.config import ExtractionConfig
from extraction.distributed import Rank, current_rank
from extraction.errors import UserError
from extraction.final_state import final_state_pass
from extraction.generation import generate_answers
from extraction.label_methods import label_answer
from extraction.models import LoadedModel, load_model
from extraction.prompts import build_prompt, encode_prompt
from extraction.questions import Question, dataset_name, load_questions
from extraction.storage_range import check_storable
from extraction.store import TraceWriter
from extraction.trace import Trace, hidden_state_indices

log = logging.getLogger(__name__)

PACKAGES = ("hallugraph", "torch", "transformers", "datasets", "safetensors", "bitsandbytes")


@dataclass
class RunResult:
    store_dir: Path
    rank: Rank = field(default_factory=Rank)
    processed: int = 0
    errors: int = 0
    skipped: int = 0


def run_extraction(cfg: ExtractionConfig) -> RunResult:
    check_options(cfg)
    rank = current_rank()
    if rank.distributed and cfg.overwrite:
        raise UserError("--overwrite with several processes would race; delete the directory first")
    name = dataset_name(cfg.dataset, cfg.dataset_file)
    store_dir = cfg.store_dir(name)
    check_output_dir(store_dir)
    requested = load_questions(name, cfg.dataset_file, cfg.num_samples, cfg.offset)
    questions = rank.take(requested)
    console.say(f"Loading model: {cfg.model}")
    loaded = load_model(
        cfg.model,
        quantization=cfg.quantization,
        revision=cfg.revision,
        torch_dtype=cfg.torch_dtype,
        device=cfg.device or _rank_device(rank),
    )
    _check_positions(cfg, loaded)
    blocks = _attention_blocks(cfg.layers, loaded.num_layers)
    console.say(f"Number of model layers: {loaded.num_layers}")
    console.say(f"\nLoading dataset {name}...")
    result = RunResult(store_dir=store_dir, rank=rank)

    writer = TraceWriter(
        result.store_dir,
        _manifest(cfg, loaded, name, blocks, requested),
        file_prefix=rank.file_prefix(f"{cfg.model_slug}_{name}"),
        lock_name=rank.lock_name,
        overwrite=cfg.overwrite,
        retry_errors=cfg.retry_errors,
        max_traces_per_shard=cfg.shard_size,
        max_shard_bytes=cfg.shard_max_mb * 2**20,
        storage_dtype=getattr(torch, cfg.dtype),
        on_shard_saved=console.shard_saved,
    )
    with writer:
        check_same_questions(writer.rows, questions, cfg.label_method, result.store_dir)
        todo = [q for q in questions if q.question_id not in writer.done_ids]
        result.skipped = len(questions) - len(todo)
        console.run_header(
            len(questions),
            result.skipped,
            cfg.shard_size,
            expected_files(todo, loaded, cfg, len(blocks)),
        )
        _extract(todo, writer, loaded, cfg, blocks, result)
    return result


def _extract(
    todo: list[Question], writer: TraceWriter, loaded: LoadedModel, cfg, blocks, result: RunResult
) -> None:
    rank = result.rank
    desc = f"Extracting (rank {rank.rank})" if rank.distributed else "Extracting"
    # A context manager: on an error the bar is closed before the error line is printed.
    with tqdm(total=len(todo), desc=desc, unit="q", dynamic_ncols=True, position=rank.rank) as bar:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            for trace_or_error in _process_batch(batch, loaded, cfg, blocks):
                if isinstance(trace_or_error, Trace):
                    writer.add(trace_or_error)
                    if cfg.verbose:
                        console.example(trace_or_error, result.processed)
                    result.processed += 1
                else:
                    question, reason = trace_or_error
                    writer.add_error(question.question_id, question.question, question.gold, reason)
                    log.warning("question %s failed: %s", question.question_id, reason)
                    result.errors += 1
                bar.update(1)
            writer.commit()  # the batch is on disk: a crash from here on loses none of it


def _rank_device(rank: Rank) -> str | None:
    """One GPU per rank under a launcher; otherwise let the loader decide."""
    if rank.distributed and torch.cuda.is_available():
        return f"cuda:{rank.local_rank}"
    return None


def expected_files(todo: list[Question], loaded: LoadedModel, cfg: ExtractionConfig, blocks: int):
    """``(fewest, most)`` shard files for ``todo``: by count, and by the byte cap with answers of
    ``max_new_tokens`` (prompt lengths measured, answers often shorter)."""
    fewest = -(-len(todo) // cfg.shard_size)
    itemsize = getattr(torch, cfg.dtype).itemsize
    total = 0
    for question in todo:
        text = build_prompt(
            question.question, loaded.tokenizer, cfg.prompt_template, cfg.chat_template
        )
        seq = len(encode_prompt(text, loaded.tokenizer, cfg.chat_template)) + cfg.max_new_tokens
        elements = (
            blocks * loaded.num_heads * seq * (seq + 1) // 2
            + (blocks + 1) * loaded.hidden_size * seq
        )
        total += elements * itemsize
    by_size = -(-total // (cfg.shard_max_mb * 2**20))
    return fewest, max(fewest, by_size)


def _check_positions(cfg: ExtractionConfig, loaded: LoadedModel) -> None:
    """Past its trained positions a model's output is noise, not an error: refuse the limit."""
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if positions is not None and cfg.max_total_tokens > positions:
        raise UserError(
            f"--max_total_tokens {cfg.max_total_tokens} is more than {cfg.model} handles "
            f"({positions} positions): use at most {positions}"
        )


def _attention_blocks(layers: list[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise UserError(f"--layers {bad} out of range: this model has blocks 0..{num_layers - 1}")
    return sorted(set(layers))


def _process_batch(batch: list[Question], loaded: LoadedModel, cfg: ExtractionConfig, blocks):
    """Yield a Trace or a (question, reason) per question. A batch that fails (out of memory,
    say) is retried one question at a time, so one bad question costs only itself."""
    runnable, prompts = [], []
    for question in batch:
        try:
            text = build_prompt(
                question.question, loaded.tokenizer, cfg.prompt_template, cfg.chat_template
            )
            ids = encode_prompt(text, loaded.tokenizer, cfg.chat_template)
        except UserError:
            raise
        except Exception as exc:  # tokenizers raise assorted types on odd input
            yield question, f"tokenizer error: {_describe(exc)}"
            continue
        if len(ids) + cfg.max_new_tokens > cfg.max_total_tokens:
            yield (
                question,
                (
                    f"too long: {len(ids)} prompt tokens + {cfg.max_new_tokens} new tokens > "
                    f"--max_total_tokens {cfg.max_total_tokens}"
                ),
            )
            continue
        runnable.append(question)
        prompts.append(ids)
    if not runnable:
        return
    try:
        yield from _traces(runnable, prompts, loaded, cfg, blocks)
    except UserError:
        raise
    except Exception as exc:
        if len(runnable) == 1:
            yield runnable[0], _describe(exc)
            return
        log.info("batch failed (%s); retrying its questions one at a time", _describe(exc))
        _free_memory()
        for question, ids in zip(runnable, prompts, strict=True):
            try:
                yield from _traces([question], [ids], loaded, cfg, blocks)
            except Exception as single_exc:
                _free_memory()
                yield question, _describe(single_exc)


def _traces(questions, prompts, loaded: LoadedModel, cfg: ExtractionConfig, blocks) -> list[Trace]:
    tokenizer = loaded.tokenizer
    answers = generate_answers(loaded.model, tokenizer, prompts, cfg.decoding, cfg.stop_strings)
    sequences = [ids + answer.answer_ids for ids, answer in zip(prompts, answers, strict=True)]
    states = final_state_pass(
        loaded.model,
        sequences,
        [len(p) for p in prompts],
        tokenizer.pad_token_id,
        blocks,
        storage_dtype=getattr(torch, cfg.dtype),
    )
    check_storable(states, cfg.dtype)
    traces = []
    for question, ids, answer, seq, state in zip(
        questions, prompts, answers, sequences, states, strict=True
    ):
        label = label_answer(answer.text, question.gold, cfg.label_method, question.question)
        # Field for field: the question (id, text, gold), the final state, the answer, the label.
        traces.append(
            Trace(
                **vars(question),
                **vars(state),
                generated_answer_clean=answer.text,
                answer_end=answer.end,
                tokens=torch.as_tensor(seq, dtype=torch.long),
                tokens_decoded=[tokenizer.decode([token]) for token in seq],
                n_prompt_tokens=len(ids),
                label=label.label,
                label_method=label.method,
                label_score=label.score,
            )
        )
    return traces


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _free_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _manifest(
    cfg: ExtractionConfig, loaded: LoadedModel, dataset: str, blocks, requested: list[Question]
) -> dict:
    config = loaded.model.config
    ids = [question.question_id for question in requested]
    return {
        "format": "hallugraph-trace-store/1",
        "settings": {
            "model": cfg.model,
            "model_source": loaded.source,
            "revision": cfg.revision,
            "quantization": loaded.quantization,
            "torch_dtype": str(loaded.model.dtype).removeprefix("torch."),
            "storage_dtype": cfg.dtype,
            "prompt_template": cfg.prompt_template,
            "chat_template": cfg.chat_template,
            "decoding": {
                "num_beams": cfg.num_beams,
                "do_sample": False,
                "max_new_tokens": cfg.max_new_tokens,
                "early_stopping": cfg.early_stopping,
                "stop_strings": list(cfg.stop_strings),
            },
            "dataset": dataset,
            "dataset_file": cfg.dataset_file and str(Path(cfg.dataset_file).resolve()),
            "attention_layers": blocks,
            "hidden_state_layers": hidden_state_indices(blocks),
        },
        "model": {
            "num_layers": loaded.num_layers,
            "num_heads": loaded.num_heads,
            "hidden_size": loaded.hidden_size,
            "vocab_size": config.vocab_size,
            "architecture": (config.architectures or [type(loaded.model).__name__])[0],
            "device": str(loaded.model.device),
        },
        # The latest run's questions: `inspect` counts those missing (an interrupted run).
        "requested": {
            "question_ids": ids,
            "sha256": hashlib.sha256(
                json.dumps([[q.question_id, q.question, q.gold] for q in requested]).encode()
            ).hexdigest(),
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
