"""From a batch of questions to their traces: prompts, answers (beam search and samples), the
final-state pass and the labels. A question that fails becomes an error record, not a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from common import UserError
from extraction.config import ExtractionConfig
from extraction.final_state import final_state_pass
from extraction.generation import Answer, generate_answers, question_seed, sample_answers
from extraction.label_methods import label_answer
from extraction.models import LoadedModel
from extraction.prompts import build_prompt, encode_prompt
from extraction.questions import Question
from extraction.storage_range import check_storable
from extraction.store import trace_id
from extraction.store.trace import Trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Todo:
    """A question and those of its generations still to make (0 = the beam-search answer)."""

    question: Question
    generations: tuple[int, ...]


def trace_ids(question: Question, generation: int, generations: int) -> dict:
    """The id fields of one generation's trace (a one-generation trace: the question's id)."""
    qid = question.question_id
    return {
        "question_id": trace_id(qid, generation, generations),
        "source_question_id": qid if generations > 1 else None,
        "generation": generation,
    }


def prompt_ids(item: Todo, loaded: LoadedModel, cfg: ExtractionConfig) -> list[int] | str:
    """The question's prompt as token ids, or the reason it cannot run."""
    try:
        text = build_prompt(
            item.question.question, loaded.tokenizer, cfg.prompt_template, cfg.chat_template
        )
        ids = encode_prompt(text, loaded.tokenizer, cfg.chat_template)
    except UserError:
        raise
    except Exception as exc:  # tokenizers raise assorted types on odd input
        return f"tokenizer error: {_describe(exc)}"
    if len(ids) + cfg.max_new_tokens > cfg.max_total_tokens:
        return (
            f"too long: {len(ids)} prompt tokens + {cfg.max_new_tokens} new tokens > "
            f"--max_total_tokens {cfg.max_total_tokens}"
        )
    return ids


# Questions per beam-search batch, at least: a batch's forward passes run with fewer rows as
# its questions finish, and each pass reads all the weights whatever its rows; more questions
# keep the rows up for longer (docs/BENCHMARKS.md, "Extraction: where the time goes").
MIN_GENERATION_BATCH = 32


def generation_batch(batch_size: int) -> int:
    """Questions per beam-search batch: ``--batch_size``, or more on a small one."""
    return max(batch_size, MIN_GENERATION_BATCH)


def beam_answers(
    items: list[Todo],
    loaded: LoadedModel,
    cfg: ExtractionConfig,
    on_answer: Callable[[int], None] = lambda count: None,
) -> dict[str, Answer]:
    """The beam-search answers of ``items`` (question id → answer), generated in batches of
    :func:`generation_batch` questions of similar prompt length: less left padding in the
    prefill and in every step's KV cache (docs/BENCHMARKS.md, "Extraction: where the time
    goes"). The final pass keeps the run's own batches, so the trace bytes do not depend on this
    grouping. A generation batch that fails is left out: :func:`process_batch` generates its
    questions again in its own batch, with its retry one question at a time."""
    runnable = []
    for item in items:
        if 0 in item.generations and isinstance(ids := prompt_ids(item, loaded, cfg), list):
            runnable.append((item.question.question_id, ids))
    runnable.sort(key=lambda qid_ids: len(qid_ids[1]))
    answers: dict[str, Answer] = {}
    size = generation_batch(cfg.batch_size)
    for start in range(0, len(runnable), size):
        group = runnable[start : start + size]
        try:
            found = generate_answers(
                loaded.model,
                loaded.tokenizer,
                [ids for _, ids in group],
                cfg.decoding,
                cfg.stop_strings,
            )
        except UserError:
            raise
        except Exception as exc:
            log.info("generation batch failed (%s); left to the run's batches", _describe(exc))
            _free_memory()
            continue
        answers.update(zip((qid for qid, _ in group), found, strict=True))
        on_answer(len(group))
    return answers


def process_batch(
    batch: list[Todo],
    loaded: LoadedModel,
    cfg: ExtractionConfig,
    blocks,
    on_answer: Callable[[int], None] = lambda count: None,
    beams: dict[str, Answer] | None = None,
):
    """Yield a Trace or a (question, generation, reason) per trace. A batch that fails (out of
    memory, say) is retried one question at a time, so one bad question costs only itself.
    ``beams`` are beam-search answers made ahead (:func:`beam_answers`); the others are made
    here. ``on_answer(n)`` is told each time ``n`` more traces have their answer."""
    beams = beams or {}
    runnable, prompts = [], []
    for item in batch:
        ids = prompt_ids(item, loaded, cfg)
        if isinstance(ids, str):
            yield from _failed(item, ids)
            continue
        runnable.append(item)
        prompts.append(ids)
    if not runnable:
        return
    try:
        yield from _traces(runnable, prompts, loaded, cfg, blocks, on_answer, beams)
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
                yield from _traces([item], [ids], loaded, cfg, blocks, on_answer, beams)
            except Exception as single_exc:
                _free_memory()
                yield from _failed(item, _describe(single_exc))


def _failed(item: Todo, reason: str):
    for generation in item.generations:
        yield item.question, generation, reason


def _answers(
    items: list[Todo],
    prompts: list[list[int]],
    loaded: LoadedModel,
    cfg: ExtractionConfig,
    on_answer: Callable[[int], None],
    beams: dict[str, Answer],
) -> list[tuple[int, int, Answer]]:
    """``(item, generation, answer)`` for every trace to make, question by question: the beam
    answers not made ahead (``beams``) in one ``generate``, each question's samples in one of
    its own."""
    model, tokenizer = loaded.model, loaded.tokenizer
    needs_beam = [i for i, item in enumerate(items) if 0 in item.generations]
    best = {
        i: beams[items[i].question.question_id]
        for i in needs_beam
        if items[i].question.question_id in beams
    }
    beam = [i for i in needs_beam if i not in best]
    if beam:
        found = generate_answers(
            model, tokenizer, [prompts[i] for i in beam], cfg.decoding, cfg.stop_strings
        )
        best.update(zip(beam, found, strict=True))
        on_answer(len(beam))
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
            on_answer(sum(generation > 0 for generation in item.generations))
        out += [(i, k, best[i] if k == 0 else drawn[k - 1]) for k in item.generations]
    return out


def _traces(
    items: list[Todo],
    prompts,
    loaded: LoadedModel,
    cfg: ExtractionConfig,
    blocks,
    on_answer,
    beams: dict[str, Answer],
):
    tokenizer = loaded.tokenizer
    answers = _answers(items, prompts, loaded, cfg, on_answer, beams)
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
                **{**vars(question), **trace_ids(question, generation, cfg.num_generations)},
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
