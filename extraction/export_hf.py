"""A store's answers as a Hugging Face ``datasets`` dataset: Parquet plus a dataset card.

One row per answer: the question, the answer, its label and where the label came from, the
per-answer scores the store holds (log-probability and entropy of each answer token, with their
summaries) and, for each chosen block, the mean and the last answer-token hidden state (the
inputs of linear probes). Attention is not exported: the store itself (safetensors, uploadable as
it is) holds it. The folder is written next to ``--output`` and renamed into place at the end, so
a failed export leaves nothing there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from common import UserError
from extraction.store import TraceStore

DATA_FILE = "data/train-00000-of-00001.parquet"
CHUNK = 64  # answers per Parquet row group
# The licences of the question sets this toolkit reads; another dataset's is the user's to state.
LICENSES = {"demo": "apache-2.0", "truthfulqa": "apache-2.0", "triviaqa": "apache-2.0"}


def checked_store(path: str | Path, blocks: list[int] | None) -> tuple[TraceStore, list[int]]:
    """The store and the blocks to export, or a one-line error naming what is missing: an
    interrupted run's questions, damaged or missing shards, blocks the run did not keep."""
    store = TraceStore(path)
    if store.missing:
        raise UserError(
            f"{store.root} is incomplete: {len(store.missing)} requested questions have no trace "
            f"(first: {store.missing[0]}); rerun its extraction command to finish it"
        )
    if not store.question_ids:
        raise UserError(f"{store.root} has no answered question to export")
    problems = store.check_headers()
    if problems:
        named = "; ".join(f"{store.root / name}: {problem}" for name, problem in problems.items())
        raise UserError(f"{store.root} is damaged: {named}")
    stored = store.manifest.settings.hidden_state_layers
    kept = [index - 1 for index in stored if index > 0]
    chosen = kept if blocks is None else blocks
    absent = [block for block in chosen if block not in kept]
    if absent:
        raise UserError(
            f"{store.root} has no output hidden state of blocks {absent} (it kept blocks {kept})"
        )
    return store, chosen


def answer_row(store: TraceStore, qid: str, blocks: list[int]) -> dict:
    row, stats = store.row(qid), store.answer_stats(qid)
    logprobs, entropy = stats.logprobs.float(), stats.entropy.float()
    fields = {
        "question_id": qid,
        "source_question_id": row.source_question_id or qid,
        "generation": row.generation,
        "question": row.question,
        "answer": row.generated_answer_clean,
        "gold": json.dumps(row.gold, ensure_ascii=False),
        "label": row.label,
        "label_method": row.label_method,
        "label_score": row.label_score,
        "answer_end": row.answer_end,
        "n_prompt_tokens": row.n_prompt_tokens,
        "n_answer_tokens": row.n_answer_tokens,
        "token_logprobs": logprobs.tolist(),
        "token_entropy": entropy.tolist(),
        "logprob_mean": _summary(logprobs, torch.mean),
        "logprob_min": _summary(logprobs, torch.min),
        "logprob_sum": float(logprobs.sum()),
        "entropy_mean": _summary(entropy, torch.mean),
        "entropy_max": _summary(entropy, torch.max),
    }
    for block in blocks:
        hidden = store.resid_post(qid, block).float()
        # An empty answer (a stop string first) has no answer token: its last token stands in.
        answer = hidden[row.n_prompt_tokens :] if len(hidden) > row.n_prompt_tokens else hidden[-1:]
        fields[f"block_{block}_mean"] = answer.mean(dim=0).tolist()
        fields[f"block_{block}_last"] = answer[-1].tolist()
    return fields


def _summary(values: torch.Tensor, reduce) -> float | None:
    return float(reduce(values)) if values.numel() else None


def features(blocks: list[int], hidden_size: int):
    """The dataset's declared schema (what ``datasets`` would otherwise guess from the rows)."""
    from datasets import Features, List, Value

    columns = {
        "question_id": Value("string"),
        "source_question_id": Value("string"),
        "generation": Value("int32"),
        "question": Value("string"),
        "answer": Value("string"),
        "gold": Value("string"),
        "label": Value("int8"),
        "label_method": Value("string"),
        "label_score": Value("float32"),
        "answer_end": Value("string"),
        "n_prompt_tokens": Value("int32"),
        "n_answer_tokens": Value("int32"),
        "token_logprobs": List(Value("float32")),
        "token_entropy": List(Value("float32")),
        **{name: Value("float32") for name in ("logprob_mean", "logprob_min", "logprob_sum")},
        **{name: Value("float32") for name in ("entropy_mean", "entropy_max")},
    }
    for block in blocks:
        for kind in ("mean", "last"):
            columns[f"block_{block}_{kind}"] = List(Value("float32"), length=hidden_size)
    return Features(columns)


def dataset_card(store: TraceStore, blocks: list[int], license: str) -> str:
    """README.md with YAML metadata (model, dataset, decoding, labels, counts, licence)."""
    from huggingface_hub import DatasetCardData

    settings, model = store.manifest.settings, store.manifest.model
    labels = [store.rows[qid].label for qid in store.question_ids]
    methods = dict(store.label_methods.most_common())
    counts = {
        "answers": len(labels),
        "hallucinated": labels.count(1),
        "correct": labels.count(0),
        "unlabelled": labels.count(None),
    }
    decoding = {k: v for k, v in vars(settings.decoding).items() if v not in (None, ())}
    data = DatasetCardData(
        license=license,
        pretty_name=f"{settings.model} answers to {settings.dataset} with hidden states",
        task_categories=["text-classification"],
        tags=["hallucination-detection", "interpretability", "hallugraph"],
        size_categories=_size_category(len(labels)),
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}],
        hallugraph={
            "model": settings.model,
            # A local path (the packaged models' cache) means nothing on another machine.
            "model_source": None if _is_local(settings.model_source) else settings.model_source,
            "architecture": model.architecture,
            "dataset": settings.dataset,
            "prompt_template": settings.prompt_template,
            "decoding": json.loads(json.dumps(decoding)),
            "label_methods": {str(key): value for key, value in methods.items()},
            "counts": counts,
            "blocks": blocks,
            "hidden_size": model.hidden_size,
            "store_format": store.manifest.format,
        },
    )
    return (
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {data.pretty_name}\n\n"
        f"{counts['answers']} answers of `{settings.model}` to `{settings.dataset}` questions "
        f"({counts['hallucinated']} hallucinated, {counts['correct']} correct, "
        f"{counts['unlabelled']} unlabelled; label methods: {methods}), exported from a "
        "hallugraph trace store by `python -m extraction export-hf`.\n\n"
        "`label` 1 means hallucinated (the answer is wrong), 0 correct; `label_method` and "
        "`label_score` say how it was decided. `token_logprobs` / `token_entropy` hold each "
        "answer token's log-probability and entropy. `block_{b}_mean` is the mean over the "
        "answer tokens of block b's output hidden state, `block_{b}_last` the last answer "
        f"token's (blocks {blocks}, hidden size {model.hidden_size}).\n\n"
        "```python\nfrom datasets import load_dataset\n"
        'answers = load_dataset("parquet", data_files="' + DATA_FILE + '")["train"]\n```\n'
    )


def _is_local(source: str | None) -> bool:
    return source is not None and Path(source).is_absolute()


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return name
    return "n>100K"


def export_hf(
    store_path: str | Path, output: str | Path, blocks: list[int] | None, license: str | None
) -> Path:
    """Write the dataset into ``output`` (a new folder); returns it."""
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--output {out} ({out.resolve()}) exists; choose a new folder")
    store, blocks = checked_store(store_path, blocks)
    license = license or LICENSES.get(store.manifest.settings.dataset.lower(), "other")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_parquet(store, blocks, staging / DATA_FILE)
        (staging / "README.md").write_text(dataset_card(store, blocks, license), encoding="utf-8")
        staging.chmod(0o777 & ~_umask())  # mkdtemp's folder is owner-only
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _write_parquet(store: TraceStore, blocks: list[int], path: Path) -> None:
    """The rows, a chunk at a time (memory stays that of one chunk, whatever the store's size),
    with the ``datasets`` features in the Parquet schema as ``Dataset.to_parquet`` writes them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = features(blocks, store.manifest.model.hidden_size).arrow_schema
    path.parent.mkdir(parents=True)
    ids = store.question_ids
    with (
        pq.ParquetWriter(path, schema) as writer,
        tqdm(total=len(ids), desc="Exporting", unit="answer") as bar,
    ):
        for start in range(0, len(ids), CHUNK):
            rows = [answer_row(store, qid, blocks) for qid in ids[start : start + CHUNK]]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            bar.update(len(rows))


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
