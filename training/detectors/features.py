"""Every detector's per-trace quantities for a whole store, computed once and cached.

One pass over the store reads, per trace, the token log-probs and entropies (no layer) and then
one layer at a time (block ``l``'s attention and its output hidden state ``l + 1``), never a
whole trace. The arrays are saved as one safetensors file keyed by the store's manifest, its
question ids and :data:`FEATURE_VERSION`, so the benchmark's seeds (and reruns) reuse them.

Arrays, one row per trace (``L`` stored layers, ``H`` heads, ``d`` hidden size):
``sequence [n, 4]`` (mean/min log-prob, mean/max entropy), ``token_probs [n, 4]``,
``mean_state``/``last_state [n, L, d]``, ``llmcheck_attention``/``llmcheck_hidden [n, L]``,
``lookback [n, L, H]``, ``lapeig [n, L, H, k]``, ``shift [n, L - 1, 4]`` (hidden Wasserstein,
hidden cosine, attention Wasserstein, attention cosine between consecutive layers) and, on a store
with several generations per question, ``sampling [n, 3]`` (:mod:`.sampling`: each trace holds
its question's scores, computed from the stored consistency data).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from common import atomic_path
from extraction.store import TraceStore
from training.detectors import sampling, scores

log = logging.getLogger(__name__)

# 2: the sampling scores come from the stored consistency data of K-generation stores.
FEATURE_VERSION = 2
LAPLACIAN_K = 10
PER_LAYER = ("mean_state", "last_state", "llmcheck_attention", "llmcheck_hidden", "lookback")
PER_LAYER += ("lapeig", "shift")


@dataclass
class StoreFeatures:
    """The cached arrays, their rows' trace ids and generations, and the blocks along the layer
    axis."""

    question_ids: list[str]
    layers: list[int]
    arrays: dict[str, np.ndarray]
    sampling_skip: str | None
    generations: np.ndarray

    def rows(self, question_ids: list[str]) -> np.ndarray:
        position = {qid: i for i, qid in enumerate(self.question_ids)}
        return np.array([position[qid] for qid in question_ids])


def trace_features(
    store: TraceStore, question_id: str, layers: list[int], k: int = LAPLACIAN_K
) -> dict[str, torch.Tensor]:
    """One trace's arrays (without the leading ``n`` axis)."""
    row = store.row(question_id)
    answer = scores.answer_positions(row.seq_len, row.n_prompt_tokens)
    stats = store.answer_stats(question_id)
    per_layer: dict[str, list[torch.Tensor]] = {key: [] for key in PER_LAYER}
    previous = None
    for layer in layers:
        attention = store.attention(question_id, layer).float()
        hidden = store.resid_post(question_id, layer).float()
        mean_state, rows = hidden[answer].mean(0), scores.answer_attention_rows(attention, answer)
        per_layer["mean_state"].append(mean_state)
        per_layer["last_state"].append(hidden[-1])
        per_layer["llmcheck_attention"].append(
            torch.tensor(scores.llmcheck_attention_score(attention, answer))
        )
        per_layer["llmcheck_hidden"].append(
            torch.tensor(scores.llmcheck_hidden_score(hidden, answer))
        )
        per_layer["lookback"].append(scores.lookback_ratio(attention, row.n_prompt_tokens, answer))
        per_layer["lapeig"].append(scores.laplacian_eigenvalues(attention, k))
        if previous is not None:
            per_layer["shift"].append(
                torch.cat(
                    [
                        scores.hidden_shift(previous[0], mean_state),
                        scores.attention_shift(previous[1], rows),
                    ]
                )
            )
        previous = (mean_state, rows)
    out = {key: torch.stack(values) for key, values in per_layer.items()}
    out["sequence"] = scores.sequence_uncertainty(stats.logprobs, stats.entropy)
    out["token_probs"] = scores.token_probability_features(stats.logprobs)
    return out


def question_scores(store: TraceStore, progress: bool = True) -> np.ndarray:
    """``[n, 3]``: each trace's row holds its question's sampling scores (:mod:`.sampling`)."""
    by_question = {
        unit: sampling.sampling_scores(store.consistency(unit))
        for unit in tqdm(store.units, desc="sampling scores", disable=not progress)
    }
    return np.array([by_question[store.row(qid).unit] for qid in store.question_ids], np.float32)


def _cache_key(store: TraceStore, layers: list[int], k: int) -> str:
    identity = {
        "version": FEATURE_VERSION,
        "manifest": store.manifest_sha256,
        "question_ids": store.question_ids,
        "layers": layers,
        "k": k,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def load_or_compute(
    store: TraceStore, cache_dir: Path, k: int = LAPLACIAN_K, progress: bool = True
) -> tuple[StoreFeatures, float]:
    """The store's features (from the cache when present) and the seconds spent computing them
    (0 when read from the cache)."""
    layers = store.stored_blocks
    path = Path(cache_dir) / f"features-{_cache_key(store, layers, k)}.safetensors"
    skip = sampling.skip_reason(store.units, store.manifest.settings.decoding)
    generations = np.array([store.row(qid).generation for qid in store.question_ids])
    if path.exists():
        log.info("detector features from %s", path)
        arrays = load_file(path)
        return StoreFeatures(list(store.question_ids), layers, arrays, skip, generations), 0.0
    if store.min_attention is not None:
        log.warning(
            "sparse store (min_attention %s): lookback, lapeig and the attention shift read the "
            "weights below it as 0 (approximate); llmcheck_attention reads the stored diagonal",
            store.min_attention,
        )
    start = time.perf_counter()
    per_trace = [
        trace_features(store, qid, layers, k)
        for qid in tqdm(store.question_ids, desc="detector features", disable=not progress)
    ]
    arrays = {
        key: torch.stack([trace[key] for trace in per_trace]).float().numpy()
        for key in per_trace[0]
    }
    if skip is None:
        arrays["sampling"] = question_scores(store, progress)
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata={"layers": json.dumps(layers)})
    seconds = time.perf_counter() - start
    log.info("detector features of %d traces in %.0f s -> %s", len(per_trace), seconds, path)
    return StoreFeatures(list(store.question_ids), layers, arrays, skip, generations), seconds
