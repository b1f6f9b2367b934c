"""The floor every stage stands on: nothing here knows about traces, graphs or detectors.

The one user-facing error (:class:`UserError`) and the runner that prints it as one ``error:``
line (:func:`run_command`), the one command-line dialect every stage's commands are built with
(:mod:`common.dialect`) and its one error shortener (:func:`parse_error_line`), atomic file writes
and JSON reads. It imports no package of ours (docs/ARCHITECTURE.md, "Floors").
"""

from common.dialect import (
    OLD_OPTION_NAMES,
    UNSET,
    CommandLine,
    call_with_arguments,
    normalise,
    parse_config,
    parse_error_line,
    to_yaml,
)
from common.errors import UserError, shown_path
from common.files import (
    atomic_open,
    atomic_path,
    atomic_write_text,
    check_name,
    plain_temp,
    read_json,
    save_figure,
    temp_pattern,
)
from common.runner import Command, describe_os_error, run_command, run_commands
from common.threads import choose_threads, free_cores, set_thread_policy

__all__ = [
    "OLD_OPTION_NAMES",
    "UNSET",
    "Command",
    "CommandLine",
    "UserError",
    "atomic_open",
    "atomic_path",
    "atomic_write_text",
    "call_with_arguments",
    "check_name",
    "choose_threads",
    "describe_os_error",
    "free_cores",
    "normalise",
    "parse_config",
    "parse_error_line",
    "plain_temp",
    "read_json",
    "run_command",
    "run_commands",
    "save_figure",
    "set_thread_policy",
    "shown_path",
    "temp_pattern",
    "to_yaml",
]
