"""Stage 1: final-state traces of a causal LM answering questions (``python -m extraction``).

Kept import-light: ``graphs`` and ``training`` read stores through ``extraction.store`` and must
not pull in ``transformers``. The pieces every stage shares are exported here: the one-line user
error and the CLI runner that prints it, the command-line dialect, and atomic file writes.
"""

from extraction.cli_config import call_with_arguments, parse_config, parse_error_line, to_yaml
from extraction.cli_runner import run_command, run_commands
from extraction.errors import UserError
from extraction.files import atomic_open, atomic_path, atomic_write_text, read_json, save_figure

__all__ = [
    "UserError",
    "atomic_open",
    "atomic_path",
    "atomic_write_text",
    "call_with_arguments",
    "parse_config",
    "parse_error_line",
    "read_json",
    "run_command",
    "run_commands",
    "save_figure",
    "to_yaml",
]
