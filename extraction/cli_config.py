"""Command-line flags and YAML keys generated from one dataclass, so they never drift apart:
field ``num_samples`` is ``--num-samples`` on the command line and ``num_samples`` in YAML.
Precedence: dataclass default < ``--config FILE`` < explicit flags."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from extraction.errors import UserError

T = TypeVar("T")


def _arg_docs(cls: type) -> dict[str, str]:
    """Per-field help from the ``Args:`` sections of the class's docstring and its bases'."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        current = None
        for line in (klass.__doc__ or "").splitlines():
            match = re.match(r"\s{8}(\w+): (.*)", line)
            if match:
                current = match.group(1)
                docs[current] = match.group(2)
            elif current and line.startswith(" " * 12):
                docs[current] += " " + line.strip()
    return docs


def _unwrap(annotation) -> tuple[Any, bool]:
    """``X | None`` → (X, True)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return inner, True
    return annotation, False


def build_parser(cls: type, prog: str) -> argparse.ArgumentParser:
    summary = (cls.__doc__ or "").strip().splitlines()[0]
    parser = argparse.ArgumentParser(prog=prog, description=summary)
    parser.add_argument("--config", help="YAML file of settings (keys = flag names with _)")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved settings as YAML and exit"
    )
    docs = _arg_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind, _ = _unwrap(hints[field.name])
        options: dict[str, Any] = {"dest": field.name, "help": docs.get(field.name)}
        options["default"] = argparse.SUPPRESS
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list:
            options["nargs"] = "*"
            options["type"] = typing.get_args(kind)[0]
        else:
            options["type"] = kind
        names = [flag, "-v"] if field.name == "verbose" else [flag]
        parser.add_argument(*names, **options)
    return parser


def parse_config(cls: type[T], argv: list[str], prog: str) -> tuple[T, bool]:
    """The dataclass built from defaults, ``--config`` and flags; and whether to print it."""
    parser = build_parser(cls, prog)
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config")
    print_config = args.pop("print_config")
    values = load_yaml_config(cls, config_path) if config_path else {}
    values.update(args)
    return cls(**values), print_config


def load_yaml_config(cls: type, path: str) -> dict:
    file = Path(path)
    if not file.exists():
        raise UserError(f"config file {file} does not exist")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{file} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise UserError(f"{file} must be a mapping of setting: value")
    known = {field.name for field in dataclasses.fields(cls)}
    values = {key.replace("-", "_"): value for key, value in values.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{file}: unknown setting(s) {', '.join(unknown)}; see --help")
    return values


def to_yaml(config) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)


_FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "free some space, then rerun the same command: what was written is kept",
    errno.EDQUOT: "free some space, then rerun the same command: what was written is kept",
    errno.EROFS: "write somewhere writable (--output-dir, --root, --trainer.default_root_dir)",
    errno.EACCES: "write somewhere you may write, or fix the permissions",
    errno.EPERM: "write somewhere you may write, or fix the permissions",
    errno.ENOTDIR: "a part of that path is a file, not a folder: pick another path",
    errno.EISDIR: "that path is a folder: give a file name",
    errno.EEXIST: "a file is where a folder should be: pick another path",
}


def describe_os_error(exc: OSError) -> str:
    """A file-system failure as one line: what, where, and what to do."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}:{where}; {_FILE_SYSTEM_ERRORS[exc.errno]}"


def run_command(package: str, command: Callable[[list[str]], None], argv: list[str]) -> int:
    """Run one CLI command: INFO logging for ``package`` on stderr, a :class:`UserError` or a
    file-system failure (disk full, read-only, no permission) as one ``error: ...`` line with
    exit status 2, Ctrl-C as 130.

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
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        root.removeHandler(handler)
    return 0
