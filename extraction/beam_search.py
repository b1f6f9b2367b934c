"""Beam search that lets a question leave the batch as soon as its answer is final.

``generate`` runs a batch until its slowest question is done: a question whose ``num_beams``
finished hypotheses are in (``early_stopping=True``) keeps being computed, ``num_beams`` rows a
step, without any effect on its result. On 64 TriviaQA questions in batches of 8 that is 1.6×
the row-steps the questions need on their own (docs/BENCHMARKS.md, "Extraction").

:func:`compacting_beam_search` is transformers' own beam search step for step (the same helper
methods, in the same order), plus one thing: after each step the questions that are done leave
the running tensors, the attention mask and the KV cache. A done question's finished
hypotheses can no longer change in transformers' loop, so its best one is taken as it is. It is
passed to ``generate(custom_generate=...)``, which prepares the inputs, the cache, the stopping
criteria and the logits processors as usual. Cases where leaving the batch could change a
result (sampling, whose random draws depend on the batch; logits processors, which may keep
per-row state; several returned sequences) run transformers' loop unchanged.

It calls eleven private names of transformers' generation code, whose signatures change between
releases, so it runs only under the transformers version its equality tests passed with
(:func:`verified`); under any other, extraction uses stock ``generate``.
"""

from __future__ import annotations

import functools
import logging

import torch
import transformers
from transformers.generation.utils import GenerationMixin

log = logging.getLogger(__name__)

# The release whose private beam-search helpers this module was checked against
# (tests/test_beam_search.py: identical sequences to stock ``generate``).
VERIFIED_TRANSFORMERS = "5.24.0"

_ROW_KWARGS = ("attention_mask", "position_ids", "token_type_ids")


def verified() -> bool:
    """Whether the installed transformers is the one this search was verified with; on another
    one line says that stock ``generate`` is used (the same answers, slower)."""
    return _verified(transformers.__version__)


@functools.cache
def _verified(installed: str) -> bool:
    if installed == VERIFIED_TRANSFORMERS:
        return True
    log.warning(
        "transformers %s is not %s, the version the compacting beam search was verified with: "
        "using stock generate (same answers, slower)",
        installed,
        VERIFIED_TRANSFORMERS,
    )
    return False


def compacting_beam_search(
    model,
    input_ids: torch.LongTensor,
    logits_processor,
    stopping_criteria,
    generation_config,
    synced_gpus: bool = False,
    **model_kwargs,
) -> torch.LongTensor:
    """A ``custom_generate`` for deterministic beam search: the sequences ``generate`` would
    return (best beam per question, ``[batch, prompt + longest answer]``)."""
    cfg = generation_config
    if (
        cfg.do_sample
        or cfg.num_beams < 2
        or cfg.num_return_sequences != 1
        or cfg.return_dict_in_generate
        or synced_gpus
        or model.config.is_encoder_decoder
        or hasattr(model, "_reorder_cache")
        or model_kwargs.get("cache") is None
        or len(logits_processor) > 0
        or any(key not in _ROW_KWARGS and torch.is_tensor(v) for key, v in model_kwargs.items())
    ):
        return GenerationMixin._beam_search(
            model,
            input_ids,
            logits_processor,
            stopping_criteria,
            cfg,
            synced_gpus,
            **model_kwargs,
        )
    return _Search(model, input_ids, stopping_criteria, cfg).run(input_ids, model_kwargs)


class _Search:
    """The state of transformers' ``_beam_search`` (same names), for the questions still
    running; ``rows`` maps them back to the batch."""

    def __init__(self, model, input_ids, stopping_criteria, cfg) -> None:
        self.model, self.stopping_criteria, self.cfg = model, stopping_criteria, cfg
        num_beams = self.num_beams = cfg.num_beams
        eos = cfg._eos_token_tensor
        pad = cfg._pad_token_tensor
        self.batch_size = input_ids.shape[0] // num_beams
        self.prompt_len = self.cur_len = input_ids.shape[1]
        self.beams_to_keep = max(2, 1 + (eos.shape[0] if eos is not None else 0)) * num_beams
        self.top_num_beam_mask = torch.cat(
            (
                torch.ones(num_beams, dtype=torch.bool),
                torch.zeros(self.beams_to_keep - num_beams, dtype=torch.bool),
            )
        ).to(input_ids.device)
        fill = pad or eos[0] if eos is not None else -1
        shape = (self.batch_size, num_beams)
        device = input_ids.device
        self.running_sequences = torch.full(
            (*shape, cfg.max_length), fill, dtype=torch.int64, device=device
        )
        self.running_sequences[:, :, : self.cur_len] = input_ids.view(*shape, -1)
        self.sequences = self.running_sequences.clone()
        self.running_beam_scores = torch.zeros(shape, dtype=torch.float, device=device)
        self.running_beam_scores[:, 1:] = -1e9
        self.beam_scores = torch.full(shape, -1e9, dtype=torch.float, device=device)
        self.is_sent_finished = torch.zeros(shape, dtype=torch.bool, device=device)
        self.heuristic_unsatisfied = torch.ones(
            (self.batch_size, 1), dtype=torch.bool, device=device
        )
        self.running_beam_indices = torch.full(
            (*shape, cfg.max_length - self.cur_len), -1, dtype=torch.int32, device=device
        )
        self.beam_indices = self.running_beam_indices.clone()
        self.rows = torch.arange(self.batch_size, device=device)
        self.best = self.sequences[:, 0].clone()
        self.best_indices = self.beam_indices[:, 0].clone()

    def run(self, input_ids: torch.LongTensor, model_kwargs: dict) -> torch.LongTensor:
        logits = self._prefill_once(input_ids, model_kwargs)
        while True:
            done = self._step(torch.nn.functional.log_softmax(logits, dim=-1), model_kwargs)
            self._retire(done)
            if done.all():
                break
            if done.any():
                self._compact(~done, model_kwargs)
            logits = self._forward(model_kwargs)
        generated = (self.best_indices + 1).bool().sum(dim=1).max()
        return self.best[:, : self.prompt_len + generated]

    def _prefill_once(self, input_ids: torch.LongTensor, model_kwargs: dict) -> torch.Tensor:
        """A question's beams start as copies of its prompt, and transformers runs every copy
        through the model; here each prompt runs once and its cache and logits are copied."""
        firsts = slice(None, None, self.num_beams)
        kwargs = {k: v[firsts] if torch.is_tensor(v) else v for k, v in model_kwargs.items()}
        outputs = self.model._prefill(
            input_ids[firsts], self.cfg, kwargs, is_first_iteration=not self.cfg.is_assistant
        )
        copies = self.rows.repeat_interleave(self.num_beams)
        model_kwargs["cache"].reorder_cache(copies)
        return self._last_logits(outputs, model_kwargs).index_select(0, copies)

    def _forward(self, model_kwargs: dict) -> torch.Tensor:
        inputs = self.model.prepare_inputs_for_generation(
            GenerationMixin._flatten_beam_dim(self.running_sequences[:, :, : self.cur_len]),
            next_sequence_length=1,
            **model_kwargs,
        )
        return self._last_logits(self.model(**inputs, return_dict=True), model_kwargs)

    def _last_logits(self, outputs, model_kwargs: dict) -> torch.Tensor:
        self.model._update_model_kwargs_for_generation(outputs, model_kwargs)
        return outputs.logits[:, -1, :].to(copy=True, dtype=torch.float32, device=self.rows.device)

    def _step(self, log_probs: torch.Tensor, model_kwargs: dict) -> torch.Tensor:
        """One step of transformers' loop (its parts b to g); which questions are now done."""
        model, cfg, batch_size, num_beams = self.model, self.cfg, self.batch_size, self.num_beams
        log_probs = GenerationMixin._unflatten_beam_dim(log_probs, batch_size, num_beams)
        log_probs = (log_probs + self.running_beam_scores[:, :, None]).reshape(batch_size, -1)
        topk_log_probs, topk_sequences, topk_beam_indices = model._get_top_k_continuations(
            accumulated_log_probs=log_probs,
            running_sequences=self.running_sequences,
            running_beam_indices=self.running_beam_indices,
            cur_len=self.cur_len,
            decoder_prompt_len=self.prompt_len,
            do_sample=False,
            beams_to_keep=self.beams_to_keep,
            num_beams=num_beams,
            batch_size=batch_size,
        )
        hits = self.stopping_criteria(
            GenerationMixin._flatten_beam_dim(topk_sequences[:, :, : self.cur_len + 1]), None
        )
        hits = GenerationMixin._unflatten_beam_dim(hits, batch_size, self.beams_to_keep)
        self.running_sequences, self.running_beam_scores, self.running_beam_indices = (
            model._get_running_beams_for_next_iteration(
                topk_log_probs=topk_log_probs,
                topk_running_sequences=topk_sequences,
                topk_running_beam_indices=topk_beam_indices,
                next_token_hits_stopping_criteria=hits,
                num_beams=num_beams,
            )
        )
        self.sequences, self.beam_scores, self.beam_indices, self.is_sent_finished = (
            model._update_finished_beams(
                sequences=self.sequences,
                topk_running_sequences=topk_sequences,
                beam_scores=self.beam_scores,
                topk_log_probs=topk_log_probs,
                beam_indices=self.beam_indices,
                topk_running_beam_indices=topk_beam_indices,
                is_early_stop_heuristic_unsatisfied=self.heuristic_unsatisfied,
                is_sent_finished=self.is_sent_finished,
                next_token_hits_stopping_criteria=hits,
                top_num_beam_mask=self.top_num_beam_mask,
                num_beams=num_beams,
                cur_len=self.cur_len,
                decoder_prompt_len=self.prompt_len,
                length_penalty=cfg.length_penalty,
                early_stopping=cfg.early_stopping,
            )
        )
        beam_idx = GenerationMixin._flatten_beam_dim(
            self.running_beam_indices[..., self.cur_len - self.prompt_len]
        )
        model_kwargs["cache"].reorder_cache(beam_idx)
        self.cur_len += 1
        self.heuristic_unsatisfied = model._check_early_stop_heuristic(
            is_early_stop_heuristic_unsatisfied=self.heuristic_unsatisfied,
            running_beam_scores=self.running_beam_scores,
            beam_scores=self.beam_scores,
            is_sent_finished=self.is_sent_finished,
            cur_len=self.cur_len,
            max_length=cfg.max_length,
            decoder_prompt_len=self.prompt_len,
            early_stopping=cfg.early_stopping,
            length_penalty=cfg.length_penalty,
        )
        # Per question, the three conditions under which transformers' loop stops (for all):
        # its finished hypotheses can no longer change from here on.
        full = self.is_sent_finished.all(dim=1) & (cfg.early_stopping is True)
        return ~self.heuristic_unsatisfied[:, 0] | full | hits.all(dim=1)

    def _retire(self, done: torch.Tensor) -> None:
        """Keep the best finished hypothesis of each question that is done."""
        self.best[self.rows[done]] = self.sequences[done, 0]
        self.best_indices[self.rows[done]] = self.beam_indices[done, 0]

    def _compact(self, keep: torch.Tensor, model_kwargs: dict) -> None:
        """Drop the done questions from every per-question tensor and from the cache."""
        for name in (
            "running_sequences",
            "running_beam_scores",
            "running_beam_indices",
            "sequences",
            "beam_scores",
            "beam_indices",
            "is_sent_finished",
            "heuristic_unsatisfied",
            "rows",
        ):
            setattr(self, name, getattr(self, name)[keep])
        flat_keep = keep.repeat_interleave(self.num_beams)
        self.batch_size = int(keep.sum())
        # The cache was just reordered by beam; keep the rows of the questions still running.
        model_kwargs["cache"].reorder_cache(flat_keep.nonzero()[:, 0])
        for key in _ROW_KWARGS:
            if model_kwargs.get(key) is not None:
                model_kwargs[key] = model_kwargs[key][flat_keep]
