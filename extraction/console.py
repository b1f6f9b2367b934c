"""What the extraction prints: the seed's console output (header, per-example detail with -v,
a line per shard, the final summary), in English. Diagnostics go through ``logging``."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from extraction.store import TraceStore
from extraction.store.trace import SEED_FIELDS, Trace

RULE = "=" * 80


def say(text: str = "") -> None:
    """Print without breaking an active progress bar."""
    tqdm.write(text)


def megabytes(path: Path) -> float:
    return path.stat().st_size / 2**20


def run_header(
    n_questions: int,
    n_skipped: int,
    shard_size: int,
    expected: tuple[int, int],
    generations: int = 1,
) -> None:
    """``expected``: the fewest and most shard files (the byte cap can close a shard early);
    ``n_skipped`` counts traces (questions, with one generation each)."""
    say(f"Number of samples to process: {n_questions}")
    if generations > 1:
        say(f"Generations per question: {generations} ({n_questions * generations} traces)")
    if n_skipped:
        say(f"Already in the store (resuming): {n_skipped}")
    say(f"Shard size: {shard_size} traces per file")
    fewest, most = expected
    say(f"Expected files: {fewest}" + (f" to {most} (byte cap)" if most > fewest else ""))


def example(trace: Trace, number: int) -> None:
    say(f"\n--- Example {number} ---")
    say(f"Question ID: {trace.question_id}")
    say(f"Question: {trace.question[:100]}...")
    say(f"Clean answer: {trace.generated_answer_clean[:100]}...")
    say(f"Total tokens (prompt + answer): {trace.seq_len}")
    say(f"First 5 decoded tokens: {trace.tokens_decoded[:5]}...")
    say(f"Last 5 decoded tokens: {trace.tokens_decoded[-5:]}")
    say(f"Label: {trace.label} ({trace.label_method}, score {trace.label_score})")


def shard_saved(path: Path, n_traces: int) -> None:
    say(f"💾 Saved shard {path.name}: {n_traces} traces, {megabytes(path):.2f} MB")


def generations(store: TraceStore) -> None:
    """How much the K answers of each question agree (a store of several generations)."""
    from extraction.agreement import agreement

    found = agreement(store)

    def share(value: float | None, form: str) -> str:
        return "n/a" if value is None else format(value, form)

    k = store.num_generations
    say(f"\n--- {k} generations per question (0: beam search, 1..{k - 1}: sampled) ---")
    say(f"Questions: {found.questions} ({found.complete} with all {k} traces)")
    say(f"Samples labelled as generation 0: {share(found.label_agreement, '.1%')}")
    say(f"Distinct answers per question: {share(found.distinct_answers, '.2f')} of {k} (mean)")
    say(
        f"Lexical similarity between answers (ROUGE-L F, mean over pairs): "
        f"{share(found.lexical_similarity, '.3f')} ({found.with_records} consistency records)"
    )


def summary(store: TraceStore, processed: int | None = None, first_trace: bool = True) -> None:
    """The seed's final summary; ``processed`` is this run's count (None: the whole store);
    ``first_trace``: describe the first trace (read from its shard)."""
    missing = store.missing
    if missing:
        say(f"\n{RULE}\n⏸ INCOMPLETE: {len(missing)} of {len(store.requested)} questions missing")
        say(f"(an interrupted run: rerun the same command to resume)\n{RULE}")
    else:
        say(f"\n{RULE}\n✅ DONE\n{RULE}")
    say(f"Total examples processed: {len(store) if processed is None else processed}")
    if processed is not None:
        say(f"Traces in the store: {len(store)}")
    say(f"Total errors: {len(store.errors)}")
    methods = ", ".join(f"{name} ({count})" for name, count in store.label_methods.items())
    say(f"Label method: {methods or 'none'}")
    shards = store.shard_files
    say(f"Total shards saved: {len(shards)}")
    say(f"Output directory: {store.root.resolve()}")
    say("\n📁 Files:")
    for path in shards:
        say(f"   • {path.name}: {megabytes(path):.2f} MB")
    total = sum(megabytes(path) for path in shards)
    say(f"\n💾 Total size on disk: {total:.2f} MB ({total / 1024:.2f} GB)")
    if store.min_attention is not None:
        say(f"Attention: sparse, weights >= {store.min_attention} (graph thresholds must be >= it)")
    labels = [store.rows[qid].label for qid in store.question_ids]
    judged = [label for label in labels if label is not None]
    if judged:
        say(
            f"Hallucination rate: {sum(judged) / len(judged):.1%} "
            f"({sum(judged)} of {len(judged)} labelled answers)"
        )
    if store.num_generations > 1:
        generations(store)
    if not store.question_ids or not first_trace:
        return
    first = store[store.question_ids[0]]
    layer = min(first.hidden_states)
    block = min(first.attentions)
    hidden = tuple(first.hidden_states[layer].shape)
    attention = tuple(first.attentions[block].shape)
    say("\n--- First trace ---")
    say("Structure of each trace:")
    say(f"  - Seed fields: {list(SEED_FIELDS)}")
    say(f"  - Hidden-state layers: {len(first.hidden_states)} (0 = embeddings)")
    say(f"  - Attention layers: {len(first.attentions)}")
    say(f"  - Total tokens in the full sequence: {first.seq_len}")
    say(f"  - Hidden state shape (layer {layer}): {hidden}")
    say(f"    → seq_len={hidden[0]} (prompt + answer), hidden_dim={hidden[1]}")
    say(f"  - Attention shape (layer {block}): {attention}")
    say(f"    → num_heads={attention[0]}, seq_len={attention[1]}x{attention[2]}")
