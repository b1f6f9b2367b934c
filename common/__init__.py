"""The floor every stage stands on: nothing here knows about traces, graphs or detectors.

The one user-facing error (:class:`UserError`) and the runner that prints it as one ``error:``
line (:func:`run_command`), the one command-line dialect every stage's commands are built with
(:mod:`common.dialect`) and its one error shortener (:func:`parse_error_line`), atomic file writes
and JSON reads. It imports no package of ours (docs/ARCHITECTURE.md, "Floors").
"""

from common.dialect import (
    CommandLine,
    call_with_arguments,
    normalise,
    parse_config,
    parse_error_line,
    to_yaml,
)
from common.errors import UserError
from common.files import (
    atomic_open,
    atomic_path,
    atomic_write_text,
    read_json,
    save_figure,
    temp_pattern,
)
from common.runner import Command, describe_os_error, run_command, run_commands

__all__ = [
    "Command",
    "CommandLine",
    "UserError",
    "atomic_open",
    "atomic_path",
    "atomic_write_text",
    "call_with_arguments",
    "describe_os_error",
    "normalise",
    "parse_config",
    "parse_error_line",
    "read_json",
    "run_command",
    "run_commands",
    "save_figure",
    "temp_pattern",
    "to_yaml",
]
