"""The one exception type a user should ever see from our command lines, and how it names a path."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input or an impossible request: the message is one line that says what to do.

    Command-line entry points print it as ``error: <message>`` and exit with status 2, without a
    traceback. Anything else that escapes is a bug in hallugraph.
    """


def shown_path(path: str | Path) -> str:
    """A path as an error about it names it: as given and, when relative, where it was looked
    for (relative paths, in configs too, are read from the current directory)."""
    path = Path(path)
    return str(path) if path.is_absolute() else f"{path} ({path.resolve()})"
