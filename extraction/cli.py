"""``python -m extraction [flags]`` runs an extraction; subcommands work on an existing store:

python -m extraction --config configs/extraction/default.yaml
python -m extraction inspect DIR              # the final summary of a store
python -m extraction inspect FILE.pkl --trust-pickle
python -m extraction verify DIR               # every shard against its checksums (exit 2)
python -m extraction label DIR [--method M]   # recompute labels (index only)
python -m extraction label DIR --from-file JUDGEMENTS.jsonl    # import judged labels
python -m extraction label DIR --method llm_judge --judge-model NAME
python -m extraction export-pickle DIR [--output DIR] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from extraction.errors import UserError

PROG = "python -m extraction"


def _run(argv: list[str]) -> None:
    from extraction import console
    from extraction.cli_config import parse_config, to_yaml
    from extraction.config import ExtractionConfig

    cfg, print_config = parse_config(ExtractionConfig, argv, PROG)
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


def _inspect(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog=f"{PROG} inspect", description="Summarise a store.")
    parser.add_argument("path", help="a store directory, or a seed pickle batch file")
    parser.add_argument("--trust-pickle", action="store_true", help="allow loading a .pkl file")
    args = parser.parse_args(argv)
    from extraction import console

    if args.path.endswith(".pkl"):
        from extraction.export import load_pickle_batch

        records = load_pickle_batch(args.path, trust_pickle=args.trust_pickle)
        first = records[0]
        console.say(f"{args.path}: {len(records)} traces; fields {list(first)}")
        console.say(f"  hidden state 0: {first['hidden_states'][0].shape}")
        console.say(f"  attention 0: {first['attentions'][0].shape}")
        return
    from extraction.store import TraceStore

    store = TraceStore(args.path)
    problems = store.check_headers()
    console.summary(store, first_trace=not problems)
    if problems:
        for name, problem in problems.items():
            console.say(f"damaged: {store.root / name}: {problem}")
        raise UserError(
            f"{len(problems)} of {len(store.shard_files)} shard files of {store.root} are damaged; "
            f"`{PROG} verify {store.root}` names their traces"
        )


def _verify(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} verify",
        description="Check every shard against the checksums in the index; exit 2 on damage.",
    )
    parser.add_argument("path", help="a store directory")
    args = parser.parse_args(argv)
    from extraction.store import TraceStore

    store = TraceStore(args.path)
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


def _label(argv: list[str]) -> None:
    from extraction.label_methods import METHODS

    parser = argparse.ArgumentParser(
        prog=f"{PROG} label", description="Recompute the label fields of a store's index."
    )
    parser.add_argument("path", help="a store directory")
    parser.add_argument(
        "--method", "--label-method", choices=METHODS, help="default: each question's own"
    )
    parser.add_argument(
        "--from-file",
        metavar="FILE",
        help="import judgements (JSONL: question_id, model, answer_sha256, label, reason, judge)",
    )
    parser.add_argument("--judge-model", help="the model --method llm_judge loads (id or path)")
    args = parser.parse_args(argv)
    from extraction.relabel import check_options, relabel

    check_options(args.method, args.from_file, args.judge_model)
    counts = relabel(args.path, args.method, args.from_file, args.judge_model)
    if counts["match"] is not None:
        for line in counts["match"].report():
            print(line)
    print(
        f"relabelled {counts['total']} traces: {counts['hallucinated']} hallucinated, "
        f"{counts['correct']} correct, {counts['unlabelled']} without a label"
    )


def _export(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} export-pickle", description="Write the seed's pickle batch files."
    )
    parser.add_argument("path", help="a store directory")
    parser.add_argument("--output", help="folder for the .pkl files (default: DIR/pickle)")
    parser.add_argument("--batch-size", type=int, default=500, help="traces per file")
    args = parser.parse_args(argv)
    from extraction import console
    from extraction.export import export_pickle

    for path in export_pickle(args.path, args.output, args.batch_size):
        console.say(f"💾 {path}: {console.megabytes(path):.2f} MB")


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "run": _run,
    "inspect": _inspect,
    "verify": _verify,
    "label": _label,
    "export-pickle": _export,
}


def main(argv: list[str] | None = None) -> int:
    from extraction.cli_config import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return run_command("extraction", COMMANDS[argv[0]], argv[1:])
    return run_command("extraction", _run, argv)
