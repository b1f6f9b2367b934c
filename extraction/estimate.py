"""The arithmetic of ``python -m extraction estimate``: the bytes a store will take and the
memory an extraction will peak at, from a model's shapes and a profile of sequence lengths.

Bytes on disk follow the store layout exactly (``extraction/store/layout.py``, ``sparse.py``):
per trace, the packed causal attention of each kept block (dense: ``heads * T(T+1)/2`` values;
sparse: every head's value at each kept position, an int16 column per position and ``T + 1`` row
offsets), ``T * hidden`` values per kept hidden state, int32 tokens and float32 per-answer-token
log-probabilities and entropies, and the safetensors header and index row (sizes measured on
``/work/stores/smollm2_demo``). The attention is quadratic in ``T``, so the estimate sums over a
profile of (prompt, answer) lengths rather than squaring a mean.

How many positions a sparse store keeps is measured on real traces
(``benchmarks/attention_density.py`` → ``extraction/data/estimate_reference.json``): for
SmolLM2-135M a power law in ``T`` per threshold, and a term in ``log(heads)`` from the max over
random subsets of its 9 heads; models with more heads keep more positions, an extrapolation the
report says it makes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from common import UserError
from extraction.model_shapes import ModelShape

REFERENCE = Path(__file__).parent / "data" / "estimate_reference.json"
# The store whose (prompt, answer) lengths and attention density are the defaults: the packaged
# SmolLM2-135M-Instruct on the 350 bundled demo questions (seed decoding, beam 5); for the
# density, its 750-question TriviaQA store too (longer sequences).
PROFILE_STORE = "smollm2_demo"
DENSITY_STORES = ("smollm2_demo", "smollm2_triviaqa")

# Measured on smollm2_demo's shard (350 traces, 22,400 tensors, a 2.41 MB header): a header entry
# per tensor, the trace record's tokens_decoded per token and the rest of the record; one
# index.jsonl row (226 KB / 350).
HEADER_BYTES_PER_TENSOR = 105
HEADER_BYTES_PER_TOKEN = 8.4
HEADER_BYTES_PER_TRACE = 330
INDEX_BYTES_PER_TRACE = 650
# bitsandbytes NF4: two weights a byte plus a float32 absmax per block of 64 weights.
NF4_BYTES_PER_WEIGHT = 0.5 + 4 / 64
INT8_BYTES_PER_WEIGHT = 1.0


@dataclass(frozen=True)
class LengthProfile:
    """(prompt tokens, answer tokens) of a set of traces, standing for the run's."""

    pairs: tuple[tuple[int, int], ...]
    source: str

    @property
    def mean_tokens(self) -> float:
        return sum(p + a for p, a in self.pairs) / len(self.pairs)

    @property
    def mean_prompt(self) -> float:
        return sum(p for p, _ in self.pairs) / len(self.pairs)

    @property
    def mean_answer(self) -> float:
        return sum(a for _, a in self.pairs) / len(self.pairs)

    @property
    def longest(self) -> tuple[int, int]:
        """The longest prompt and the longest sequence (what pads the worst batch)."""
        return max(p for p, _ in self.pairs), max(p + a for p, a in self.pairs)

    @property
    def longest_answer(self) -> int:
        return max(a for _, a in self.pairs)

    def with_prompts(self, prompts: list[int], source: str) -> LengthProfile:
        """Measured prompt lengths, each with an answer length of this profile in turn."""
        answers = [a for _, a in self.pairs]
        pairs = tuple((p, answers[k % len(answers)]) for k, p in enumerate(prompts))
        return LengthProfile(pairs, f"{source}; answers: {self.source}")

    def with_answers_like(self, measured: LengthProfile) -> LengthProfile:
        """This profile's answer lengths times one factor, so their mean is ``measured``'s."""
        factor = measured.mean_answer / self.mean_answer
        pairs = tuple((p, max(0, round(a * factor))) for p, a in self.pairs)
        return LengthProfile(pairs, f"{self.source}, scaled ×{factor:.2f} to {measured.source}")

    def scaled_to(self, mean_tokens: float) -> LengthProfile:
        """Every length times one factor, so the mean sequence is ``mean_tokens``."""
        factor = mean_tokens / self.mean_tokens
        pairs = tuple((max(1, round(p * factor)), max(1, round(a * factor))) for p, a in self.pairs)
        return LengthProfile(pairs, f"{self.source}, scaled ×{factor:.2f} to --mean_tokens")


@cache
def _reference() -> dict[str, dict]:
    stores = json.loads(REFERENCE.read_text())["stores"]
    return {store["store"]: store for store in stores}


def reference_profile() -> LengthProfile:
    """The default lengths: the packaged SmolLM2's prompts and answers on the demo questions."""
    store = _reference()[PROFILE_STORE]
    pairs = tuple((int(p), int(a)) for p, a in store["lengths"])
    return LengthProfile(pairs, f"SmolLM2-135M's {len(pairs)} demo traces")


@dataclass(frozen=True)
class DensityModel:
    """Fraction of lower-triangle positions a sparse store keeps at threshold ``W``:
    ``min(1, c * T**-b + s * log(heads / reference_heads))``."""

    min_attention: float
    c: float
    b: float
    s: float
    reference_heads: int

    def fraction(self, seq_len: int, heads: int) -> float:
        """At least the diagonal (always kept), at most every position."""
        base = self.c * seq_len**-self.b + self.s * math.log(heads / self.reference_heads)
        return min(1.0, max(base, 2 / (seq_len + 1)))


def density_model(min_attention: float) -> DensityModel:
    """The measured density, interpolated (in log W) between the measured thresholds."""
    stores = [_reference()[name] for name in DENSITY_STORES]
    measured = sorted(float(w) for w in stores[0]["density"])
    if not measured[0] <= min_attention <= measured[-1]:
        raise UserError(
            f"--min_attention {min_attention}: densities are measured for W in "
            f"[{measured[0]}, {measured[-1]}]; pass --attention_density (the fraction of "
            "positions kept, from benchmarks/attention_density.py on a store of yours)"
        )
    upper = next(w for w in measured if w >= min_attention)
    lower = max(w for w in measured if w <= min_attention)
    low, high = _fit(stores, lower), _fit(stores, upper)
    t = 0.0 if upper == lower else math.log(min_attention / lower) / math.log(upper / lower)
    c, b, s = (x + t * (y - x) for x, y in zip(low, high, strict=True))
    return DensityModel(min_attention, c, b, s, stores[0]["heads"])


def _fit(stores: list[dict], w: float) -> tuple[float, float, float]:
    """``(c, b, s)`` at one measured threshold: least squares of ``log f = log c - b log T``
    over the stores' length bins (weighted by their positions), and ``s`` the least-squares
    slope of the fraction against ``log k`` over random subsets of k heads."""
    xs, ys, weights = [], [], []
    for store in stores:
        for bin_ in store["density"][str(w)]["bins"]:
            xs.append(math.log(bin_["length_sum"] / bin_["blocks"]))
            ys.append(math.log(bin_["kept"] / bin_["positions"]))
            weights.append(bin_["positions"])
    slope, intercept = _least_squares(xs, ys, weights)
    by_heads = stores[0]["density"][str(w)]["fraction_by_heads"]
    logs = [math.log(k) for k in range(1, len(by_heads) + 1)]
    s, _ = _least_squares(logs, by_heads, [1.0] * len(logs))
    return math.exp(intercept), -slope, s


def _least_squares(xs: list[float], ys: list[float], weights: list[float]) -> tuple[float, float]:
    """Slope and intercept of the weighted least-squares line through ``(x, y)``."""
    total = sum(weights)
    mx = sum(w * x for w, x in zip(weights, xs, strict=True)) / total
    my = sum(w * y for w, y in zip(weights, ys, strict=True)) / total
    sxy = sum(w * (x - mx) * (y - my) for w, x, y in zip(weights, xs, ys, strict=True))
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(weights, xs, strict=True))
    slope = sxy / sxx
    return slope, my - slope * mx


@dataclass(frozen=True)
class StoreLayout:
    """What decides a trace's bytes besides its lengths."""

    blocks: int  # blocks whose attention is kept (their output hidden states too)
    heads: int
    hidden_size: int
    dtype_bytes: int  # the store dtype's
    density: DensityModel | float | None = None  # None: dense; a float: a given fraction

    def kept_fraction(self, seq_len: int) -> float:
        if isinstance(self.density, DensityModel):
            return self.density.fraction(seq_len, self.heads)
        return float(self.density)


def trace_bytes(layout: StoreLayout, prompt: int, answer: int) -> dict[str, float]:
    """Bytes of one trace on disk, by part (``extraction/store/writer.py`` field for field)."""
    seq_len = prompt + answer
    positions = seq_len * (seq_len + 1) // 2
    if layout.density is None:
        attention = layout.blocks * layout.heads * positions * layout.dtype_bytes
        tensors_per_block = 1
    else:
        kept = max(seq_len, round(layout.kept_fraction(seq_len) * positions))
        column_bytes = 2 if seq_len <= 2**15 else 4
        offset_bytes = 2 if kept < 2**15 else 4
        per_block = kept * (layout.heads * layout.dtype_bytes + column_bytes)
        attention = layout.blocks * (per_block + (seq_len + 1) * offset_bytes)
        tensors_per_block = 3  # values, columns, row offsets
    tensors = 3 + (layout.blocks + 1) + layout.blocks * tensors_per_block
    return {
        "attention": attention,
        "hidden_states": (layout.blocks + 1) * seq_len * layout.hidden_size * layout.dtype_bytes,
        "tokens_and_answer_stats": 4 * seq_len + 2 * 4 * answer,
        "headers_and_index": tensors * HEADER_BYTES_PER_TENSOR
        + seq_len * HEADER_BYTES_PER_TOKEN
        + HEADER_BYTES_PER_TRACE
        + INDEX_BYTES_PER_TRACE,
    }


def store_bytes(layout: StoreLayout, profile: LengthProfile, traces: int) -> dict[str, float]:
    """Bytes of ``traces`` traces whose lengths are distributed like ``profile``'s, by part."""
    parts: dict[str, float] = {}
    for prompt, answer in profile.pairs:
        for part, size in trace_bytes(layout, prompt, answer).items():
            parts[part] = parts.get(part, 0.0) + size
    return {part: size * traces / len(profile.pairs) for part, size in parts.items()}


def weight_bytes(shape: ModelShape, quantization: str, compute_bytes: int) -> float:
    """The loaded weights: bitsandbytes quantizes the blocks' linear layers; embeddings, norms
    and the output head stay in the compute dtype."""
    other = (shape.parameters - shape.linear_parameters) * compute_bytes
    per_weight = {
        "4bit": NF4_BYTES_PER_WEIGHT,
        "prequantized": NF4_BYTES_PER_WEIGHT,
        "8bit": INT8_BYTES_PER_WEIGHT,
    }.get(quantization, compute_bytes)
    return shape.linear_parameters * per_weight + other


@dataclass(frozen=True)
class BatchSettings:
    batch_size: int
    num_beams: int
    max_new_tokens: int
    compute_bytes: int


def peak_memory(
    shape: ModelShape,
    weights: float,
    batch: BatchSettings,
    profile: LengthProfile,
    layout: StoreLayout,
    cuda: bool,
) -> dict[str, float]:
    """Peak memory of an extraction by phase, for the worst batch (the profile's longest prompt,
    answer and sequence): ``weights + max(generation, final pass)`` on the device.

    Generation holds the beams' key/value cache and a step's float32 scores. The final pass
    (``extraction/final_state.py``: one block's attention at a time, packed as it is produced)
    holds every hidden state (``output_hidden_states``), one block's float32 attention and its
    cast, a block's MLP activations, and the answer positions' logits with one row's float32
    log-softmax. The batch's packed traces go to host memory: on CUDA they are reported apart
    (``host``), on CPU they add to the final pass.
    """
    longest_prompt, longest = profile.longest
    sequences = batch.batch_size * batch.num_beams
    kv_cache = (
        sequences
        * shape.num_layers
        * 2
        * shape.num_kv_heads
        * shape.head_dim
        * (longest_prompt + batch.max_new_tokens)
        * batch.compute_bytes
    )
    step_scores = sequences * shape.vocab_size * 4 * 3
    rows = batch.batch_size * longest
    hidden_states = (shape.num_layers + 1) * rows * shape.hidden_size * batch.compute_bytes
    attention = batch.batch_size * shape.num_heads * longest**2 * (4 + batch.compute_bytes)
    mlp = rows * shape.intermediate_size * 3 * batch.compute_bytes
    answer = profile.longest_answer + 1
    logits = (batch.batch_size * batch.compute_bytes + 2 * 4) * answer * shape.vocab_size
    packed = batch.batch_size * sum(
        trace_bytes(layout, longest_prompt, longest - longest_prompt).values()
    )
    generation = kv_cache + step_scores
    final_pass = hidden_states + attention + mlp + logits + (0 if cuda else packed)
    return {
        "weights": weights,
        "generation": generation,
        "final_pass": final_pass,
        "peak": weights + max(generation, final_pass),
        "host": packed if cuda else 0.0,
        "kv_cache": kv_cache,
        "hidden_states": hidden_states,
        "one_block_attention": attention,
        "logits": logits,
        "packed_batch": packed,
    }
