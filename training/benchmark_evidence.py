"""The benchmark's evidence options, in one place: learning curves (``--train_sizes``), transfer
to other stores (``--transfer_traces``, ``--transfer_labels``) and held-out relations
(``--split_by``). Each is checked here before any graph is built or detector fitted."""

from __future__ import annotations

from jsonargparse import ArgumentParser

from common import UserError
from extraction.store import TraceStore, label_source
from graphs import SPLIT_BY, store_splits
from training.benchmark_transfer import TransferStore, open_transfer


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--train_sizes",
        type=list[int] | None,
        default=None,
        help="learning curve: also train every detector on this many train questions, nested "
        "seeded subsets of the train split (val and test unchanged), e.g. [250,500,1000]",
    )
    parser.add_argument(
        "--transfer_traces",
        type=str,
        nargs="+",
        default=None,
        help="stores of the same model to score, whole, with every detector trained here",
    )
    parser.add_argument(
        "--transfer_labels",
        type=str,
        default="index",
        help="labels of the transfer stores: index (their own) or judged (packaged judgements)",
    )
    parser.add_argument(
        "--split_by",
        type=str | None,
        default=None,
        help="question (stratified split) or relation (hold out whole relations of a fact "
        "store: train on some, validate and test on others); sets --data.split_by",
    )


def apply_split_by(cfg, options: dict) -> None:
    """``--split_by`` into the data options (where every detector's split comes from)."""
    if cfg.split_by is None:
        return
    if cfg.split_by not in SPLIT_BY:
        raise UserError(f"--split_by {cfg.split_by!r}: choose one of {', '.join(SPLIT_BY)}")
    options["split_by"] = cfg.split_by


def train_sizes(cfg, options: dict) -> list[int]:
    """The learning curve's sizes, sorted; a one-line error for a size below 2 or above the
    smallest train split over the seeds (no graph is built to find out)."""
    sizes = sorted(set(cfg.train_sizes or []))
    if not sizes:
        return []
    if sizes[0] < 2:
        raise UserError(f"--train_sizes must be at least 2 (both classes), got {sizes[0]}")
    store = TraceStore(options["traces"])
    source = label_source(store, options["labels"])
    labelled = {qid: label for qid, label in source.labels.items() if label is not None}
    for seed in range(cfg.seeds):
        splits = store_splits(
            options["root"], store, labelled, seed, options["split_ratios"], options["split_by"]
        )
        n = len({store.rows[qid].unit for qid in splits["train"]})
        if sizes[-1] > n:
            raise UserError(
                f"--train_sizes {sizes[-1]} is above the train split's {n} questions (split "
                f"seed {seed}); choose sizes up to {n}"
            )
    return sizes


def transfer_stores(cfg, options: dict) -> list[TransferStore]:
    """The ``--transfer_traces`` stores, checked (same model, both classes labelled)."""
    if not cfg.transfer_traces:
        return []
    if cfg.transfer_labels not in ("index", "judged"):
        raise UserError(f"--transfer_labels {cfg.transfer_labels!r}: choose index or judged")
    return open_transfer(cfg.transfer_traces, TraceStore(options["traces"]), cfg.transfer_labels)
