"""How every stage's ``main`` runs a command: a :class:`UserError` or a file-system failure is one
``error: ...`` line with exit status 2, never a traceback."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

from common.errors import UserError

Command = Callable[[list[str]], None]

_FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "free some space, then rerun the same command: what was written is kept",
    errno.EDQUOT: "free some space, then rerun the same command: what was written is kept",
    errno.EROFS: "write somewhere writable (--output_dir, --root, --trainer.default_root_dir)",
    errno.EACCES: "write somewhere you may write, or fix the permissions",
    errno.EPERM: "write somewhere you may write, or fix the permissions",
    errno.ENOTDIR: "a part of that path is a file, not a folder: pick another path",
    errno.EISDIR: "that path is a folder: give a file name",
    errno.EEXIST: "a file is where a folder should be: pick another path",
}


def describe_os_error(exc: OSError) -> str:
    """A file-system failure as one line: what, where, and what to do."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}; {_FILE_SYSTEM_ERRORS[exc.errno]}"


def run_command(package: str, command: Command, argv: list[str]) -> int:
    """Run one CLI command: INFO logging for ``package`` on stderr, a :class:`UserError` or a
    file-system failure (disk full, read-only, no permission) as one ``error: ...`` line with
    exit status 2, ``--help`` as 0, Ctrl-C as 130.

    The log handler is removed afterwards, so calling a ``main`` in-process (tests, notebooks)
    never leaves a handler writing to a stream that has since been closed.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    # Our own progress notes at INFO; other libraries only when they warn.
    handler.addFilter(
        lambda record: (
            record.levelno >= logging.WARNING
            or record.name == package
            or record.name.startswith(f"{package}.")
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    logging.getLogger(package).setLevel(logging.INFO)
    try:
        command(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _FILE_SYSTEM_ERRORS:
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help; or a library that exits with a message
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(f"error: {exc.code}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        root.removeHandler(handler)
    return 0


def run_commands(
    package: str, commands: dict[str, Command], argv: list[str] | None, default: Command | None
) -> int:
    """A stage's ``main``: the first argument names one of ``commands``; without one, ``default``
    runs (or, with no default, an error lists the commands)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in commands:
        return run_command(package, commands[argv[0]], argv[1:])
    if default is None:
        names = ", ".join(commands)
        return run_command(package, _no_command(names, package), argv)
    return run_command(package, default, argv)


def _no_command(names: str, package: str) -> Command:
    def fail(argv: list[str]) -> None:
        given = f"unknown command {argv[0]!r}; " if argv else ""
        raise UserError(f"{given}choose one of {names} (python -m {package} COMMAND --help)")

    return fail
