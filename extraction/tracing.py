"""From a batch of questions to their traces: prompts, answers (beam search and samples), the
final-state pass and the labels. A question that fails becomes an error record, not a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from extraction.config import ExtractionConfig
from extraction.errors import UserError
from extraction.final_state import final_state_pass
from extraction.generation import Answer, generate_answers, question_seed, sample_answers
from extraction.label_methods import label_answer
from extraction.models import LoadedModel
from extraction.prompts import build_prompt, encode_prompt
from extraction.questions import Question
from extraction.storage_range import check_storable
from extraction.store import trace_id
from extraction.trace import Trace

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


def process_batch(
    batch: list[Todo],
    loaded: LoadedModel,
    cfg: ExtractionConfig,
    blocks,
    on_answer: Callable[[int], None] = lambda count: None,
):
    """Yield a Trace or a (question, generation, reason) per trace. A batch that fails (out of
    memory, say) is retried one question at a time, so one bad question costs only itself.
    ``on_answer(n)`` is told each time ``n`` more traces have their answer."""
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
        yield from _traces(runnable, prompts, loaded, cfg, blocks, on_answer)
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
                yield from _traces([item], [ids], loaded, cfg, blocks, on_answer)
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
    items: list[Todo], prompts, loaded: LoadedModel, cfg: ExtractionConfig, blocks, on_answer
):
    tokenizer = loaded.tokenizer
    answers = _answers(items, prompts, loaded, cfg, on_answer)
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
