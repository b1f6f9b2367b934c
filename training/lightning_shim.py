"""Every private name of Lightning (and of jsonargparse under it) that ``training`` relies on, in
one place, each behind a public-named method. Verified with ``lightning==2.6.6`` and
``jsonargparse==4.53.0`` (pyproject.toml pins both); on an upgrade, this is the file to check,
and ``tests/test_training_cli.py`` (checkpoint refusal, the dialect, the logger choice) the tests
that tell.

- ``LightningCLI._parse_ckpt_path``: the hook where Lightning reads a checkpoint's
  hyperparameters and silently replaces the configured model with them; ours refuses a
  contradicting model or graph spec instead (:meth:`ShimmedCLI.check_checkpoint_path`).
- ``LightningCLI._get``: a section of the parsed config, subcommand or not
  (:meth:`ShimmedCLI.config_section`).
- ``ArgumentParser._subcommands_action``: the parser of the subcommand the arguments name
  (:func:`subcommand_parser`), so flags are read in the dialect of the parser that owns them.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LightningCLI


class ShimmedCLI(LightningCLI):
    """``LightningCLI`` whose private hooks call public-named methods."""

    def check_checkpoint_path(self) -> None:
        """Check ``--ckpt_path`` against the configuration (replaces Lightning's own reading)."""

    def config_section(self, name: str, default: Any = None) -> Any:
        """The instantiated config's section ``name`` (``trainer``, ...)."""
        return self._get(self.config_init, name, default=default)

    def _parse_ckpt_path(self) -> None:
        self.check_checkpoint_path()


def subcommand_parser(parser, args: list[str]):
    """The parser of the subcommand ``args`` starts with (``fit``...), or None."""
    subcommands = getattr(parser, "_subcommands_action", None)
    return subcommands.choices.get(args[0]) if subcommands and args else None
