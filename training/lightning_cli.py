"""Our ``LightningCLI``: YAML and flags wired to the model, data module and trainer constructors,
so every constructor argument is a config key. The commands built on it (``sweep-layers``,
``baselines``, ``benchmark``) import it from here; :mod:`training.cli` dispatches them all.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from common import UserError, normalise
from training.callbacks import ConfigAndReport, ScoresWriter
from training.checkpoints import (
    LIGHTNING_CKPT_ALIASES,
    check_checkpoint_matches,
    point_latest_checkpoint,
)
from training.data import HallucinationGraphDataModule
from training.lightning_shim import ShimmedCLI, subcommand_parser
from training.module import GraphClassifier

PROG = "python -m training"
MONITOR = "val/auroc"
DESCRIPTION = (
    "Train and evaluate hallucination detectors on attention graphs. More commands: "
    f"`{PROG} sweep-layers --help` (AUROC per layer), `{PROG} baselines --help`, "
    f"`{PROG} benchmark --help` (every detector over several split seeds)."
)

# Lightning shows the first docstring line of each Trainer method, cut mid-sentence.
SUMMARIES = {
    "fit": "Train a detector; keeps the checkpoint with the best validation AUROC.",
    "validate": "Score a checkpoint on the validation split.",
    "test": "Score a checkpoint on the test split: report.json and roc_curve.png.",
    "predict": "Score the traces of --data.predict_traces with a checkpoint: scores.csv.",
}


class HallugraphCLI(ShimmedCLI):
    """LightningCLI with our defaults: checkpoint and early stopping on validation AUROC, a scores
    writer for ``predict``, and model input sizes read from the data (never typed by hand)."""

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        prog: str = PROG,
        description: str = DESCRIPTION,
    ) -> None:
        super().__init__(
            model_class=GraphClassifier,
            datamodule_class=HallucinationGraphDataModule,
            subclass_mode_model=True,
            save_config_callback=ConfigAndReport,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "prog": prog,
                "exit_on_error": False,
                "allow_abbrev": False,
                "description": description,
            },
            # Deterministic kernels where torch has them (a warning names any it lacks, on GPU):
            # with --threads, the same config and seed give the same checkpoint bits.
            trainer_defaults={"default_root_dir": "runs", "deterministic": "warn"},
            args=args,
            run=run,
        )

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        for choice in parser._subcommands_action._choices_actions:
            choice.help = SUMMARIES.get(choice.dest, choice.help)
        for name, subparser in self._subcommand_parsers.items():
            subparser.description = SUMMARIES.get(name, subparser.description)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """``args`` in the one dialect of every stage (:func:`common.normalise`), read by the
        parser of the subcommand they name (``fit``...) or, without one, by ``parser``."""
        args = list(sys.argv[1:] if args is None else args)
        self.normalised_args = normalise(subcommand_parser(parser, args) or parser, args)
        # ``main`` always hands over explicit args (it strips our own subcommands first), which
        # Lightning would warn about whenever sys.argv is also set.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, self.normalised_args)

    def instantiate_trainer(self, **kwargs):
        """TensorBoard and CSV logs side by side in the run folder's ``lightning_logs/version_N``
        (``tensorboard --logdir runs``); the checkpoints of that version go into its
        ``checkpoints/``, so no fit replaces another's. ``--trainer.logger`` still picks another.
        The thread count is set here, before any graph is built or step taken."""
        threads = self.config_section("threads", default=0)
        if threads < 0:
            raise UserError(f"--threads must be 0 (torch's default) or more, got {threads}")
        if threads:
            torch.set_num_threads(threads)
        trainer = self.config_section("trainer", default={})
        if trainer.get("logger") in (None, True) and "logger" not in kwargs:
            root = trainer.get("default_root_dir") or "runs"
            tensorboard = TensorBoardLogger(save_dir=root, name="lightning_logs")
            # The first logger names the version folder; the CSV logger writes into the same.
            csv = CSVLogger(save_dir=root, name="lightning_logs", version=tensorboard.version)
            kwargs["logger"] = [tensorboard, csv]
        return super().instantiate_trainer(**kwargs)

    def check_checkpoint_path(self) -> None:
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
            best = callback.best_model_path
            print(f"best checkpoint: {best} (val AUROC {shown})")
            latest = point_latest_checkpoint(best, self.trainer.default_root_dir)
            if latest is not None:
                print(f"latest best:     {latest} (links to it)")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.add_lightning_class_args(ScoresWriter, "scores")
        parser.add_argument(
            "--threads",
            type=int,
            default=1,
            help="torch intra-op threads. A sum split over another number of threads adds in "
            "another order (checkpoints differ in the last bits, and early stopping can pick "
            "another epoch), so a fixed number gives the same result on any machine; 0 keeps "
            "torch's default (every core: faster on big graphs, not reproducible elsewhere)",
        )
        # No dirpath: Lightning puts each fit's best.ckpt into its own version folder
        # (lightning_logs/version_N/checkpoints); after a fit, {trainer.default_root_dir}/
        # checkpoints/best.ckpt links to the newest, so `test`/`predict` can name one path.
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


@dataclass(frozen=True)
class Option:
    """One option of a command built on ``fit``'s configuration (``--output``, ``--layers``)."""

    name: str
    type: Any
    default: Any
    help: str


class CommandConfig(HallugraphCLI):
    """``fit``'s configuration plus a command's own options in the same parser, so they share
    its dialect: a flag and a YAML key each, ``--help`` and ``--print_config`` show them all.
    Nothing is built (no model, data module or trainer)."""

    def __init__(
        self, command: str, description: str, options: list[Option], args: list[str]
    ) -> None:
        self.options = options
        super().__init__(args, run=False, prog=f"{PROG} {command}", description=description)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        for option in self.options:
            parser.add_argument(
                f"--{option.name}", type=option.type, default=option.default, help=option.help
            )

    def instantiate_classes(self) -> None:
        pass


def parse_command(
    command: str, description: str, options: list[Option], argv: list[str]
) -> tuple[Namespace, list[str]]:
    """The checked configuration of ``command`` (``fit``'s and its own ``options``) and the
    arguments that are ``fit``'s alone (to run ``fit`` with)."""
    parsed = CommandConfig(command, description, options, argv)
    own = {f"--{option.name}" for option in options}
    run_args: list[str] = []
    tokens = iter(parsed.normalised_args)  # normalised: each own option is one flag and one value
    for arg in tokens:
        flag, equals, _ = arg.partition("=")
        if flag not in own:
            run_args.append(arg)
        elif not equals:
            next(tokens, None)
    return parsed.config, run_args
