"""``python -m extraction [flags]`` runs an extraction; subcommands work on an existing store:

python -m extraction --config configs/extraction/default.yaml
python -m extraction inspect DIR              # the final summary of a store
python -m extraction inspect FILE.pkl --trust_pickle
python -m extraction verify DIR               # every shard against its checksums (exit 2)
python -m extraction label DIR [--method M]   # recompute labels (index only)
python -m extraction label DIR --from_file JUDGEMENTS.jsonl    # import judged labels
python -m extraction label DIR --method llm_judge --judge_model NAME
python -m extraction export-pickle DIR [--output DIR] [--batch_size 500]
python -m extraction export-hf DIR --output OUT [--blocks 10 15]   # a `datasets` dataset
python -m extraction estimate --model NAME --num_samples N [--mean_tokens T] [run options]
python -m extraction questions facts --output FILE [--num_questions N] [--seed S] [--relations R]

Every command takes ``--config FILE``, ``--print_config`` and ``--help`` (common.dialect).
"""

from __future__ import annotations

from common import Command, UserError, call_with_arguments, parse_config, run_commands, to_yaml

PROG = "python -m extraction"
DESCRIPTION = (
    "Extract final-state traces (hidden states + attentions over prompt + answer). More "
    f"commands: `{PROG} inspect|verify|label|export-pickle|export-hf|estimate|questions --help`."
)


def _run(argv: list[str]) -> None:
    from extraction import console
    from extraction.config import ExtractionConfig

    cfg, print_config = parse_config(ExtractionConfig, argv, PROG, DESCRIPTION)
    if print_config:
        print(to_yaml(cfg), end="")
        return
    from extraction.run import run_extraction
    from extraction.store import TraceStore

    result = run_extraction(cfg)
    if result.rank.distributed:
        console.say(
            f"rank {result.rank.rank}: {result.processed} processed, {result.errors} errors"
        )
    else:
        console.summary(TraceStore(result.store_dir), processed=result.processed)


def _estimate(argv: list[str]) -> None:
    from extraction.estimate_command import EstimateConfig, run_estimate

    cfg, print_config = parse_config(EstimateConfig, argv, f"{PROG} estimate")
    if print_config:
        print(to_yaml(cfg), end="")
        return
    run_estimate(cfg)


def inspect(path: str, trust_pickle: bool = False) -> None:
    """Summarise a store (or a seed pickle batch); exit 2 naming damaged shards.

    Args:
        path: A store directory, or a seed pickle batch file (``.pkl``).
        trust_pickle: Allow loading a ``.pkl`` file (pickle can run code: only your own files).
    """
    from extraction import console

    if path.endswith(".pkl"):
        from extraction.export import load_pickle_batch

        records = load_pickle_batch(path, trust_pickle=trust_pickle)
        first = records[0]
        console.say(f"{path}: {len(records)} traces; fields {list(first)}")
        console.say(f"  hidden state 0: {first['hidden_states'][0].shape}")
        console.say(f"  attention 0: {first['attentions'][0].shape}")
        return
    from extraction.store import TraceStore

    store = TraceStore(path)
    problems = store.check_headers()
    console.summary(store, first_trace=not problems)
    if problems:
        for name, problem in problems.items():
            console.say(f"damaged: {store.root / name}: {problem}")
        raise UserError(
            f"{len(problems)} of {len(store.shard_files)} shard files of {store.root} are damaged; "
            f"`{PROG} verify {store.root}` names their traces"
        )


def verify(path: str) -> None:
    """Check every shard against the checksums in the index; exit 2 on damage.

    Args:
        path: A store directory.
    """
    from extraction.store import TraceStore

    store = TraceStore(path)
    problems = store.verify()
    for name, (problem, qids) in problems.items():
        shown = ", ".join(qids[:20]) + (f" (+{len(qids) - 20} more)" if len(qids) > 20 else "")
        print(f"damaged: {store.root / name}: {problem}; traces: {shown or 'none identified'}")
    checked = sum(len(rows) for rows in store.shard_rows().values())
    unchecked = sum(store.rows[qid].shard_sha256 is None for qid in store.question_ids)
    if problems:
        raise UserError(
            f"{len(problems)} of {len(store.shard_files)} shard files of {store.root} are damaged "
            "(listed above); restore them from a copy, or extract their questions again into a new "
            "store"
        )
    note = f" ({unchecked} without recorded checksums: headers only)" if unchecked else ""
    print(f"ok: {len(store.shard_files)} shard files, {checked} traces{note}")


def label(
    path: str,
    method: str | None = None,
    from_file: str | None = None,
    judge_model: str | None = None,
) -> None:
    """Recompute the label fields of a store's index (no traced model is loaded).

    Args:
        path: A store directory.
        method: Label method (docs/LABELS.md); default: each question's own.
        from_file: Import judgements (JSONL: question_id, model, answer_sha256, label, reason,
            judge) instead of computing labels.
        judge_model: The model ``--method llm_judge`` loads (registry id, hub id or folder).
    """
    from extraction.relabel import check_options, relabel

    check_options(method, from_file, judge_model)
    counts = relabel(path, method, from_file, judge_model)
    if counts["match"] is not None:
        for line in counts["match"].report():
            print(line)
    print(
        f"relabelled {counts['total']} traces: {counts['hallucinated']} hallucinated, "
        f"{counts['correct']} correct, {counts['unlabelled']} without a label"
    )


def export_pickle(path: str, output: str | None = None, batch_size: int = 500) -> None:
    """Write the seed's pickle batch files (``{model}_{dataset}_batch_{num:04d}.pkl``).

    Args:
        path: A store directory.
        output: Folder for the ``.pkl`` files (default: ``DIR/pickle``).
        batch_size: Traces per file (the seed's 500).
    """
    from extraction import console
    from extraction.export import export_pickle as write_batches

    for written in write_batches(path, output, batch_size):
        console.say(f"💾 {written}: {console.megabytes(written):.2f} MB")


def _questions(argv: list[str]) -> None:
    """``questions SET [options]``: write a generated question set (only ``facts`` so far)."""
    from extraction.facts import write_questions

    generators = {"facts": write_questions}
    if not argv or argv[0] not in generators:
        given = (
            f"unknown question set {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        )
        raise UserError(
            f"{given}name the set to write: {PROG} questions {'|'.join(generators)} --output FILE"
        )
    call_with_arguments(generators[argv[0]], argv[1:], f"{PROG} questions {argv[0]}")


def export_hf(
    path: str,
    output: str | None = None,
    blocks: list[int] | None = None,
    license: str | None = None,
) -> None:
    """Write the answers as a Hugging Face dataset (Parquet + a dataset card): question, answer,
    label and its method, per-token log-probabilities and entropies, and each chosen block's mean
    and last answer-token hidden state.

    Args:
        path: A store directory (or hf://datasets/OWNER/NAME).
        output: A new folder for the dataset (required; ``datasets.load_dataset(output)`` reads
            it).
        blocks: Blocks whose output hidden states to export (default: every block stored).
        license: The card's licence id (default: the question set's, else ``other``).
    """
    from extraction import console
    from extraction.export_hf import DATA_FILE
    from extraction.export_hf import export_hf as write_dataset

    if output is None:
        raise UserError(f"{PROG} export-hf needs --output DIR: a new folder for the dataset")
    written = write_dataset(path, output, blocks, license)
    console.say(f"💾 {written / DATA_FILE}: {console.megabytes(written / DATA_FILE):.2f} MB")
    console.say(f"   card: {written / 'README.md'}")


def _subcommand(function, name: str) -> Command:
    return lambda argv: call_with_arguments(function, argv, f"{PROG} {name}")


COMMANDS: dict[str, Command] = {
    "run": _run,
    "inspect": _subcommand(inspect, "inspect"),
    "verify": _subcommand(verify, "verify"),
    "label": _subcommand(label, "label"),
    "export-pickle": _subcommand(export_pickle, "export-pickle"),
    "export-hf": _subcommand(export_hf, "export-hf"),
    "estimate": _estimate,
    "questions": _questions,
}


def main(argv: list[str] | None = None) -> int:
    return run_commands("extraction", COMMANDS, argv, default=_run)
