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
from tqdm.auto import tqdm

from common import UserError
from extraction import console
from extraction.checks import check_options, check_output_dir, check_same_questions
from extraction.config import ExtractionConfig
from extraction.consistency import sync_consistency
from extraction.distributed import Rank, current_rank
from extraction.estimate import StoreLayout, trace_bytes
from extraction.final_state import final_state_pass
from extraction.generation import Answer, generate_answers, question_seed, sample_answers
from extraction.label_methods import label_answer
from extraction.manifest import build_manifest
from extraction.models import LoadedModel, load_model
from extraction.prompts import build_prompt, encode_prompt
from extraction.questions import Question, dataset_name, load_questions
from extraction.storage_range import check_storable
from extraction.store import TraceStore, TraceWriter, trace_id
from extraction.store.consistency import consistency_name
from extraction.store.trace import Trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Todo:
    """A question and those of its generations still to make (0 = the beam-search answer)."""

    question: Question
    generations: tuple[int, ...]


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
    # A context manager: on an error the bar is closed before the error line is printed.
    with tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, position=rank.rank) as bar:
        for start in range(0, len(todo), cfg.batch_size):
            batch = todo[start : start + cfg.batch_size]
            for trace_or_error in _process_batch(batch, loaded, cfg, blocks):
                if isinstance(trace_or_error, Trace):
                    writer.add(trace_or_error)
                    if cfg.verbose:
                        console.example(trace_or_error, result.processed)
                    result.processed += 1
                else:
                    question, generation, reason = trace_or_error
                    ids = _trace_ids(question, generation, cfg.num_generations)
                    writer.add_error(
                        question=question.question, gold=question.gold, reason=reason, **ids
                    )
                    log.warning("question %s failed: %s", ids["question_id"], reason)
                    result.errors += 1
                bar.update(1)
            writer.commit()  # the batch is on disk: a crash from here on loses none of it
            if cfg.num_generations > 1:
                _sync_consistency(result, [item.question.question_id for item in batch])


def _trace_ids(question: Question, generation: int, generations: int) -> dict:
    """The id fields of one generation's trace (a one-generation trace: the question's id)."""
    qid = question.question_id
    return {
        "question_id": trace_id(qid, generation, generations),
        "source_question_id": qid if generations > 1 else None,
        "generation": generation,
    }


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


def _check_positions(cfg: ExtractionConfig, loaded: LoadedModel) -> None:
    """Past its trained positions a model's output is noise, not an error: refuse the limit."""
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
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


def _process_batch(batch: list[Todo], loaded: LoadedModel, cfg: ExtractionConfig, blocks):
    """Yield a Trace or a (question, generation, reason) per trace. A batch that fails (out of
    memory, say) is retried one question at a time, so one bad question costs only itself."""
    runnable, prompts = [], []
    for item in batch:
        question = item.question
        try:
            text = build_prompt(
                question.question, loaded.tokenizer, cfg.prompt_template, cfg.chat_template
            )
            ids = encode_prompt(text, loaded.tokenizer, cfg.chat_template)
        except UserError:
            raise
        except Exception as exc:  # tokenizers raise assorted types on odd input
            yield from _failed(item, f"tokenizer error: {_describe(exc)}")
            continue
        if len(ids) + cfg.max_new_tokens > cfg.max_total_tokens:
            yield from _failed(
                item,
                f"too long: {len(ids)} prompt tokens + {cfg.max_new_tokens} new tokens > "
                f"--max_total_tokens {cfg.max_total_tokens}",
            )
            continue
        runnable.append(item)
        prompts.append(ids)
    if not runnable:
        return
    try:
        yield from _traces(runnable, prompts, loaded, cfg, blocks)
    except UserError:
        raise
    except Exception as exc:
        if len(runnable) == 1:
            yield from _failed(runnable[0], _describe(exc))
            return
        log.info("batch failed (%s); retrying its questions one at a time", _describe(exc))
        _free_memory()
        for item, ids in zip(runnable, prompts, strict=True):
            try:
                yield from _traces([item], [ids], loaded, cfg, blocks)
            except Exception as single_exc:
                _free_memory()
                yield from _failed(item, _describe(single_exc))


def _failed(item: Todo, reason: str):
    for generation in item.generations:
        yield item.question, generation, reason


def _answers(
    items: list[Todo], prompts: list[list[int]], loaded: LoadedModel, cfg: ExtractionConfig
) -> list[tuple[int, int, Answer]]:
    """``(item, generation, answer)`` for every trace to make, question by question: the beam
    answers of the batch in one ``generate``, each question's samples in one of its own."""
    model, tokenizer = loaded.model, loaded.tokenizer
    beam = [i for i, item in enumerate(items) if 0 in item.generations]
    best = {}
    if beam:
        found = generate_answers(
            model, tokenizer, [prompts[i] for i in beam], cfg.decoding, cfg.stop_strings
        )
        best = dict(zip(beam, found, strict=True))
    out = []
    for i, item in enumerate(items):
        drawn: list[Answer] = []
        if any(generation > 0 for generation in item.generations):
            # Every sample is drawn, also on a resume that needs only some: sample k is then
            # the same whatever else is missing.
            seed = question_seed(cfg.seed, item.question.question_id)
            drawn = sample_answers(
                model,
                tokenizer,
                prompts[i],
                cfg.num_generations - 1,
                cfg.sampling,
                seed,
                cfg.stop_strings,
            )
        out += [(i, k, best[i] if k == 0 else drawn[k - 1]) for k in item.generations]
    return out


def _traces(items: list[Todo], prompts, loaded: LoadedModel, cfg: ExtractionConfig, blocks):
    tokenizer = loaded.tokenizer
    answers = _answers(items, prompts, loaded, cfg)
    sequences = [prompts[i] + answer.answer_ids for i, _, answer in answers]
    n_prompt = [len(prompts[i]) for i, _, _ in answers]
    states = []
    # As many sequences per final-state pass as questions per batch, whatever K is.
    for start in range(0, len(sequences), cfg.batch_size):
        end = start + cfg.batch_size
        chunk = final_state_pass(
            loaded.model,
            sequences[start:end],
            n_prompt[start:end],
            tokenizer.pad_token_id,
            blocks,
            storage_dtype=getattr(torch, cfg.dtype),
        )
        check_storable(chunk, cfg.dtype)
        states += chunk
    traces = []
    for (i, generation, answer), seq, state in zip(answers, sequences, states, strict=True):
        question = items[i].question
        label = label_answer(answer.text, question.gold, cfg.label_method, question.question)
        # Field for field: the question (id, text, gold), the final state, the answer, the label.
        traces.append(
            Trace(
                **{**vars(question), **_trace_ids(question, generation, cfg.num_generations)},
                **vars(state),
                generated_answer_clean=answer.text,
                answer_end=answer.end,
                tokens=torch.as_tensor(seq, dtype=torch.long),
                tokens_decoded=[tokenizer.decode([token]) for token in seq],
                n_prompt_tokens=len(prompts[i]),
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
