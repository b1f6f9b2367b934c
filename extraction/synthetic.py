"""Small random trace stores written through the real :class:`TraceWriter`, with no model.

What the graph and training tests (and the store benchmark) build on: the store format, the
manifest and the index are the extraction run's own, only the numbers are random. Attention is a
causal softmax (each row sums to 1, the upper triangle is zero), as a model's would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from extraction.consistency import sync_consistency
from extraction.store import Trace, TraceStore, TraceWriter, trace_id
from extraction.store.trace import hidden_state_indices


@dataclass(frozen=True)
class SyntheticShape:
    """The sizes of a synthetic model and its traces. The defaults are the tests' tiny model (2
    blocks, 4 heads, hidden 32); ``answer_tokens`` cycles over the traces (0: an empty answer)."""

    blocks: int = 2
    heads: int = 4
    hidden: int = 32
    prompt_tokens: int = 12
    answer_tokens: tuple[int, ...] = (3, 5, 1, 4, 6, 2)
    vocab_size: int = 1000


def synthetic_trace(
    question_id: str,
    shape: SyntheticShape,
    answer_tokens: int,
    label: int | None,
    seed: int,
    relation: str | None = None,
) -> Trace:
    """One random trace of ``shape``: ``shape.prompt_tokens`` prompt tokens, then
    ``answer_tokens`` answer tokens, every block's attention and every hidden state; with
    ``relation``, its gold names it, as a fact question's does."""
    generator = torch.Generator().manual_seed(seed)
    seq_len = shape.prompt_tokens + answer_tokens
    future = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)

    def attention() -> torch.Tensor:
        scores = 2.0 * torch.randn(shape.heads, seq_len, seq_len, generator=generator)
        return scores.masked_fill(future, float("-inf")).softmax(dim=-1)

    tokens = torch.randint(shape.vocab_size, (seq_len,), generator=generator)
    answer = " ".join(f"w{int(token)}" for token in tokens[shape.prompt_tokens :])
    return Trace(
        question_id=question_id,
        question=f"Synthetic question {question_id}?",
        generated_answer_clean=answer,
        tokens=tokens,
        tokens_decoded=[f"w{int(token)}" for token in tokens],
        n_prompt_tokens=shape.prompt_tokens,
        hidden_states={
            index: torch.randn(seq_len, shape.hidden, generator=generator)
            for index in hidden_state_indices(range(shape.blocks))
        },
        attentions={block: attention() for block in range(shape.blocks)},
        token_logprobs=-torch.rand(answer_tokens, generator=generator),
        token_entropy=torch.rand(answer_tokens, generator=generator),
        gold={"aliases": [f"gold {question_id}"], **({"relation": relation} if relation else {})},
        label=label,
        label_method=None if label is None else "synthetic",
        label_score=None if label is None else float(1 - label),
    )


def synthetic_manifest(
    shape: SyntheticShape,
    dataset: str = "synthetic",
    num_generations: int = 1,
    min_attention: float | None = None,
    model: str = "synthetic",
) -> dict:
    """A manifest with every field an extraction run writes (the model named ``model``); with
    ``min_attention``, of a sparse store."""
    blocks = list(range(shape.blocks))
    decoding = {
        "num_beams": 1,
        "do_sample": False,
        "max_new_tokens": max(shape.answer_tokens),
        "early_stopping": True,
        "stop_strings": ["\n"],
    }
    if num_generations > 1:
        decoding.update(
            do_sample=True, num_generations=num_generations, temperature=1.0, top_p=1.0, seed=0
        )
    return {
        "format": "hallugraph-trace-store/1",
        "settings": {
            "model": model,
            "model_source": None,
            "revision": None,
            "quantization": "none",
            "torch_dtype": "float32",
            "storage_dtype": "float16",
            "prompt_template": "Question: {question}\nAnswer:",
            "chat_template": False,
            "decoding": decoding,
            "dataset": dataset,
            "dataset_file": None,
            "attention_blocks": blocks,
            "hidden_state_layers": hidden_state_indices(blocks),
            "attention_format": "dense" if min_attention is None else "sparse",
            "min_attention": min_attention,
        },
        "model": {
            "num_layers": shape.blocks,
            "num_heads": shape.heads,
            "hidden_size": shape.hidden,
            "vocab_size": shape.vocab_size,
            "architecture": "Synthetic",
            "device": "cpu",
        },
    }


def write_synthetic_store(
    root: str | Path,
    n_traces: int = 6,
    shape: SyntheticShape = SyntheticShape(),
    *,
    labelled: bool = True,
    max_traces_per_shard: int = 4,
    num_generations: int = 1,
    min_attention: float | None = None,
    relations: int = 0,
    model: str = "synthetic",
) -> Path:
    """Write ``n_traces`` random traces (``synthetic_0000``, ...) to a new store at ``root``.

    Labels alternate 0, 1, 0, ... (both classes in any split of four or more), or are None with
    ``labelled=False``. Same arguments, same store: every trace is seeded by its number.

    With ``num_generations`` K > 1 there are ``n_traces`` questions of K traces each
    (``synthetic_0000#0`` .. ``#K-1``) and the consistency file, as ``--num_generations K``
    writes them. Generation 0 is labelled as above; the odd generations (1, 3, ...) repeat
    generation 0's trace, the even ones get random answers labelled ``(question + generation)
    % 2``, so the K answers of a question partly agree. With ``min_attention`` the attention is
    stored sparse (``--attention_format sparse``). With ``relations`` R > 0 question ``n``
    is a fact question of relation ``relation_{(n // 2) % R}`` (in its gold; both labels in
    every relation). ``model`` is the
    manifest's model name.
    """
    root = Path(root)
    with TraceWriter(
        root,
        synthetic_manifest(
            shape, num_generations=num_generations, min_attention=min_attention, model=model
        ),
        file_prefix="synthetic",
        max_traces_per_shard=max_traces_per_shard,
    ) as writer:
        for number in range(n_traces):
            question_id = f"synthetic_{number:04d}"
            for generation in range(num_generations):
                same = generation % 2 == 1 or generation == 0
                variant = number if same else number + generation
                answer_tokens = shape.answer_tokens[variant % len(shape.answer_tokens)]
                label = variant % 2 if labelled else None
                seed = number if same else (number + 1) * 1000 + generation
                relation = f"relation_{number // 2 % relations}" if relations else None
                trace = synthetic_trace(question_id, shape, answer_tokens, label, seed, relation)
                if num_generations > 1:
                    trace.question_id = trace_id(question_id, generation, num_generations)
                    trace.source_question_id, trace.generation = question_id, generation
                writer.add(trace)
    if num_generations > 1:
        store = TraceStore(root)
        sync_consistency(store, store.units)
    return root
