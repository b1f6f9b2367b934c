"""``python -m training fit|validate|test|predict --config configs/training/gcn.yaml``.

Lightning's CLI (:class:`training.lightning_cli.HallugraphCLI`) wires YAML and flags to the model,
data module and trainer constructors, so every constructor argument is a config key. More
commands are ours: ``sweep-layers`` (one detector per layer, AUROC against layer), ``baselines``
(trace-only detectors on the same test split) and ``benchmark`` (every detector over several
split seeds, :mod:`training.benchmark`).
"""

from __future__ import annotations

import logging
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from common import UserError, parse_error_line, run_command
from training.lightning_cli import HallugraphCLI

MODEL_CLASSES = ", ".join(
    f"training.models.{name}Classifier"
    for name in ("GCN", "GAT", "GIN", "SAGE", "MultiLayer", "MPNN")
)


def one_line(message: str) -> str:
    """The one shortener's line, with the model classes named when a class path is wrong."""
    line = parse_error_line(message)
    if "has no attribute" in line or "No module named" in line:
        line += f" (model classes: {MODEL_CLASSES})"
    return line


def _not_an_advertisement(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("💡 Tip")


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence what is not ours to fix: Lightning's product tips and a deprecation warning it
    triggers inside itself (torch's pytree API); and two notices that are false alarms with a
    CSV logger in a version folder beside TensorBoard's (a new folder: no metrics.csv to delete)
    and with checkpoints kept per version (`test` of an earlier version's checkpoint). Our own
    warnings still show."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addFilter(_not_an_advertisement)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
            warnings.filterwarnings("ignore", message=r"Experiment logs directory .* not empty")
            warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
            yield
    finally:
        rank_zero.removeFilter(_not_an_advertisement)


def _lightning(argv: list[str]) -> None:
    HallugraphCLI(args=argv)


def _sweep(argv: list[str]) -> None:
    from training.sweep import main as sweep_main

    sweep_main(argv)


def _baselines(argv: list[str]) -> None:
    from training.baselines import main as baselines_main

    baselines_main(argv)


def _benchmark(argv: list[str]) -> None:
    from training.benchmark import main as benchmark_main

    benchmark_main(argv)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "sweep-layers": _sweep,
    "baselines": _baselines,
    "benchmark": _benchmark,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0], _lightning) if argv else _lightning
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]

    def with_one_line_errors(args: list[str]) -> None:
        try:
            with quiet_third_party():
                command(args)
        except ArgumentError as exc:
            raise UserError(one_line(str(exc))) from None
        except Exception as exc:
            # jsonargparse wraps what our constructors raise (a negative lr...) in its own error.
            cause = exc
            while cause is not None and not isinstance(cause, UserError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            raise cause from None

    return run_command("training", with_one_line_errors, argv)
