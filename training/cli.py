"""``python -m training fit|validate|test|predict --config configs/training/gcn.yaml``.

Lightning's CLI wires YAML and flags to the model, data module and trainer constructors, so every
constructor argument is a config key. More commands are ours: ``sweep-layers`` (one detector
per layer, AUROC against layer), ``baselines`` (trace-only detectors on the same test split) and
``benchmark`` (every detector over several split seeds, :mod:`training.benchmark`).
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from extraction import UserError, parse_error_line, run_command
from training.callbacks import ConfigAndReport, ScoresWriter
from training.checkpoints import LIGHTNING_CKPT_ALIASES, check_checkpoint_matches
from training.data import HallucinationGraphDataModule
from training.module import GraphClassifier

PROG = "python -m training"
MONITOR = "val/auroc"
DESCRIPTION = (
    "Train and evaluate hallucination detectors on attention graphs. More commands: "
    f"`{PROG} sweep-layers --help` (AUROC per layer), `{PROG} baselines --help`, "
    f"`{PROG} benchmark --help` (every detector over several split seeds)."
)


def _checkpoint_dir(root_dir: str | None) -> str | None:
    return None if root_dir is None else str(Path(root_dir) / "checkpoints")


class HallugraphCLI(LightningCLI):
    """LightningCLI with our defaults: checkpoint and early stopping on validation AUROC, a scores
    writer for ``predict``, and model input sizes read from the data (never typed by hand)."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=GraphClassifier,
            datamodule_class=HallucinationGraphDataModule,
            subclass_mode_model=True,
            save_config_callback=ConfigAndReport,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"prog": PROG, "exit_on_error": False, "description": DESCRIPTION},
            trainer_defaults={"default_root_dir": "runs"},
            args=args,
            run=run,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # ``main`` always hands over explicit args (it strips our own subcommands first), which
        # Lightning would warn about whenever sys.argv is also set.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)

    def instantiate_trainer(self, **kwargs):
        """The logger Lightning would choose (TensorBoard when installed, else CSV; both in the
        run folder's ``lightning_logs/version_N``), named explicitly, so Lightning does not print
        a notice on how it chose. ``--trainer.logger`` still picks another."""
        trainer = self._get(self.config_init, "trainer", default={})
        if trainer.get("logger") in (None, True) and "logger" not in kwargs:
            tensorboard = any(find_spec(name) for name in ("tensorboard", "tensorboardX"))
            logger_class = TensorBoardLogger if tensorboard else CSVLogger
            root = trainer.get("default_root_dir") or "runs"
            kwargs["logger"] = logger_class(save_dir=root, name="lightning_logs")
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Lightning would replace the configured model with the checkpoint's, silently; we
        refuse a model or graph spec that contradicts the checkpoint instead."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path is None or ckpt_path in LIGHTNING_CKPT_ALIASES:
            return
        config = self.config[subcommand]
        check_checkpoint_matches(ckpt_path, config["model"].as_dict(), config["data"].as_dict())

    def after_fit(self) -> None:
        callback = self.trainer.checkpoint_callback
        if self.trainer.is_global_zero and callback is not None and callback.best_model_path:
            score = callback.best_model_score
            shown = "n/a" if score is None else f"{float(score):.3f}"
            print(f"best checkpoint: {callback.best_model_path} (val AUROC {shown})")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.add_lightning_class_args(ScoresWriter, "scores")
        # One predictable file per run directory, so `test`/`predict` can name it:
        # {trainer.default_root_dir}/checkpoints/best.ckpt (a new fit replaces it).
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", _checkpoint_dir)
        parser.set_defaults(
            {
                "checkpoint.monitor": MONITOR,
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.enable_version_counter": False,
                "early_stopping.monitor": MONITOR,
                "early_stopping.mode": "max",
                "early_stopping.patience": 15,
                # A tiny validation split can hold one class (AUROC undefined): count it as
                # "no improvement" instead of stopping the run at once.
                "early_stopping.check_finite": False,
            }
        )
        parser.link_arguments(
            "data.num_node_features", "model.init_args.in_channels", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.num_edge_features", "model.init_args.edge_dim", apply_on="instantiate"
        )


MODEL_CLASSES = ", ".join(
    f"training.models.{name}Classifier"
    for name in ("GCN", "GAT", "GIN", "SAGE", "MultiLayer", "MPNN")
)


def one_line(message: str) -> str:
    """jsonargparse explains a bad value over a dozen lines (every Union member it tried); keep
    the key, the class path and the actual cause."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    for i, line in enumerate(lines):
        problem = re.match(r"- Problem with given class_path '([^']+)':", line)
        if problem is None:
            continue
        cause = []
        for detail in lines[i + 1 :]:
            if detail.startswith("- "):
                break
            cause.append(detail)
        text = f"--{key.group(1) if key else 'model'} {problem.group(1)}: {' '.join(cause)}"
        if "has no attribute" in text or "No module named" in text:
            text += f" (model classes: {MODEL_CLASSES})"
        return text
    return parse_error_line(message)


def _not_an_advertisement(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("💡 Tip")


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Silence what is not ours to fix: Lightning's product tips and a deprecation warning it
    triggers inside itself (torch's pytree API). Our own warnings still show."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addFilter(_not_an_advertisement)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
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
