"""The extraction run: questions → answers → final-state traces → labelled store.

Resumable: traces already in the store's index are skipped. A question that fails is
recorded with its reason and the run goes on. With ``--num_generations K`` each question gets K
traces (generation 0 the beam-search answer, 1..K-1 sampled), each resumed and retried on its
own, and the store a consistency record per question (:mod:`extraction.store.consistency`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common import UserError, choose_threads
from extraction import console
from extraction.checks import (
    check_options,
    check_output_dir,
    check_same_questions,
    check_unlocked,
)
from extraction.config import ExtractionConfig
from extraction.consistency import sync_consistency
from extraction.distributed import Rank, current_rank
from extraction.estimate import StoreLayout, trace_bytes
from extraction.manifest import build_manifest
from extraction.models import LoadedModel, load_model, model_config
from extraction.progress import extraction_bar
from extraction.prompts import build_prompt, encode_prompt
from extraction.questions import Question, dataset_name, load_questions
from extraction.store import TraceStore, TraceWriter, trace_id
from extraction.store.consistency import consistency_name
from extraction.store.trace import Trace
from extraction.tracing import Todo, beam_answers, generation_batch, process_batch, trace_ids

log = logging.getLogger(__name__)

# Beam answers are made for this many generation batches at a time, in batches sorted by prompt
# length (tracing.beam_answers); a crash loses at most these answers, never a committed batch.
GENERATION_WINDOW = 4


@dataclass
class RunResult:
    store_dir: Path
    rank: Rank = field(default_factory=Rank)
    processed: int = 0
    errors: int = 0
    skipped: int = 0
    extract_seconds: float = 0.0  # answering and tracing, model loading excluded


def run_extraction(cfg: ExtractionConfig) -> RunResult:
    check_options(cfg)
    rank = current_rank()
    if rank.distributed and cfg.overwrite:
        raise UserError("--overwrite with several processes would race; delete the directory first")
    name = dataset_name(cfg.dataset, cfg.dataset_file)
    store_dir = cfg.store_dir(name)
    check_output_dir(store_dir)
    check_unlocked(store_dir, rank.lock_name)
    requested = load_questions(name, cfg.dataset_file, cfg.num_samples, cfg.offset)
    questions = rank.take(requested)
    config = model_config(cfg.model, cfg.revision)
    _check_positions(cfg, config)
    attention_blocks(cfg.layers, config.num_hidden_layers)
    threads, why = choose_threads()
    torch.set_num_threads(threads)
    console.say(f"Threads: {threads} ({why})")
    console.say(f"Loading model: {cfg.model}")
    loaded = load_model(
        cfg.model,
        quantization=cfg.quantization,
        revision=cfg.revision,
        torch_dtype=cfg.torch_dtype,
        device=cfg.device or _rank_device(rank),
    )
    blocks = attention_blocks(cfg.layers, loaded.num_layers)
    console.say(f"Number of model layers: {loaded.num_layers}")
    console.say(f"\nLoading dataset {name}...")
    result = RunResult(store_dir=store_dir, rank=rank)

    writer = TraceWriter(
        result.store_dir,
        build_manifest(cfg, loaded, name, blocks, requested),
        file_prefix=rank.file_prefix(f"{cfg.model_slug}_{name}"),
        lock_name=rank.lock_name,
        overwrite=cfg.overwrite,
        retry_errors=cfg.retry_errors,
        max_traces_per_shard=cfg.shard_size,
        max_shard_bytes=cfg.shard_max_mb * 2**20,
        storage_dtype=getattr(torch, cfg.dtype),
        on_shard_saved=console.shard_saved,
    )
    generations = cfg.num_generations
    with writer:
        check_same_questions(writer.rows, questions, cfg.label_method, result.store_dir)
        todo = _todo(questions, writer.done_ids, generations)
        traces = [item.question for item in todo for _ in item.generations]
        result.skipped = len(questions) * generations - len(traces)
        console.run_header(
            len(questions),
            result.skipped,
            cfg.shard_size,
            expected_files(traces, loaded, cfg, len(blocks)),
            generations,
        )
        start = time.perf_counter()
        _extract(todo, writer, loaded, cfg, blocks, result)
        if generations > 1:  # the records a crash lost, or a retried generation made stale
            _sync_consistency(result, [question.question_id for question in questions])
        result.extract_seconds = time.perf_counter() - start
    return result


def _todo(questions: list[Question], done: set[str], generations: int) -> list[Todo]:
    todo = []
    for question in questions:
        qid = question.question_id
        missing = tuple(k for k in range(generations) if trace_id(qid, k, generations) not in done)
        if missing:
            todo.append(Todo(question, missing))
    return todo


def _sync_consistency(result: RunResult, question_ids: list[str]) -> None:
    name = consistency_name(result.rank.rank if result.rank.distributed else None)
    sync_consistency(TraceStore(result.store_dir), question_ids, name)


def _extract(
    todo: list[Todo], writer: TraceWriter, loaded: LoadedModel, cfg, blocks, result: RunResult
) -> None:
    rank = result.rank
    desc = f"Extracting (rank {rank.rank})" if rank.distributed else "Extracting"
    unit = "q" if cfg.num_generations == 1 else "trace"
    total = sum(len(item.generations) for item in todo)
    window = GENERATION_WINDOW * generation_batch(cfg.batch_size)
    with extraction_bar(total, desc, unit, rank.rank) as bar:
        for first in range(0, len(todo), window):
            questions = todo[first : first + window]
            bar.start(sum(len(item.generations) for item in questions))
            beams = beam_answers(questions, loaded, cfg, bar.answered_traces)
            for start in range(0, len(questions), cfg.batch_size):
                batch = questions[start : start + cfg.batch_size]
                _write_batch(batch, writer, loaded, cfg, blocks, result, bar, beams)


def _write_batch(batch: list[Todo], writer: TraceWriter, loaded, cfg, blocks, result, bar, beams):
    written = 0
    for trace_or_error in process_batch(
        batch, loaded, cfg, blocks, on_answer=bar.answered_traces, beams=beams
    ):
        if isinstance(trace_or_error, Trace):
            writer.add(trace_or_error)
            if cfg.verbose:
                console.example(trace_or_error, result.processed)
            result.processed += 1
        else:
            question, generation, reason = trace_or_error
            ids = trace_ids(question, generation, cfg.num_generations)
            writer.add_error(question=question.question, gold=question.gold, reason=reason, **ids)
            log.warning("question %s failed: %s", ids["question_id"], reason)
            result.errors += 1
        written += 1
    writer.commit()  # the batch is on disk: a crash from here on loses none of it
    bar.written(written)
    if cfg.num_generations > 1:
        _sync_consistency(result, [item.question.question_id for item in batch])


def _rank_device(rank: Rank) -> str | None:
    """One GPU per rank under a launcher; otherwise let the loader decide."""
    if rank.distributed and torch.cuda.is_available():
        return f"cuda:{rank.local_rank}"
    return None


def expected_files(todo: list[Question], loaded: LoadedModel, cfg: ExtractionConfig, blocks: int):
    """``(fewest, most)`` shard files for ``todo``: by count, and by the byte cap with dense
    traces whose answers run to ``max_new_tokens`` (prompt lengths measured, answers often
    shorter, sparse attention smaller: an upper bound)."""
    fewest = -(-len(todo) // cfg.shard_size)
    layout = StoreLayout(
        blocks, loaded.num_heads, loaded.hidden_size, getattr(torch, cfg.dtype).itemsize
    )
    total = 0
    for question in todo:
        text = build_prompt(
            question.question, loaded.tokenizer, cfg.prompt_template, cfg.chat_template
        )
        prompt = len(encode_prompt(text, loaded.tokenizer, cfg.chat_template))
        total += sum(trace_bytes(layout, prompt, cfg.max_new_tokens).values())
    by_size = -(-int(total) // (cfg.shard_max_mb * 2**20))
    return fewest, max(fewest, by_size)


def _check_positions(cfg: ExtractionConfig, config) -> None:
    """Past its trained positions a model's output is noise, not an error: refuse the limit."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and cfg.max_total_tokens > positions:
        raise UserError(
            f"--max_total_tokens {cfg.max_total_tokens} is more than {cfg.model} handles "
            f"({positions} positions): use at most {positions}"
        )


def attention_blocks(layers: list[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise UserError(f"--layers {bad} out of range: this model has blocks 0..{num_layers - 1}")
    return sorted(set(layers))
