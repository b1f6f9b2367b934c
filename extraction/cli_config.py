"""The command-line dialect of every stage, on jsonargparse (what LightningCLI uses).

A command's options are the parameters of a function or a dataclass: names, types and defaults
come from its signature, the help from its docstring's ``Args:`` section. Each option is a flag
and a YAML key with one spelling (``--num_samples`` ↔ ``num_samples``); ``--config FILE`` reads
the keys, ``--print_config`` prints the resolved settings. Precedence: default < ``--config`` <
flags, in command-line order.

The seed's spellings keep working: a flag may be written with hyphens (``--num-samples``,
``--no-prompt-edges``), a boolean is a bare flag (``--overwrite``; also ``--overwrite false`` and
``--no_overwrite``), and a list takes its items one after another (``--layers 10 20``) or as
one YAML list (``--layers [10,20]``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from argparse import ArgumentError
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from extraction.errors import UserError, shown_path

T = TypeVar("T")

SPELLING_NOTE = (
    "Every option is also a key of the --config YAML. A flag may be written with hyphens "
    "(--num-samples = --num_samples); a boolean flag alone means true (--no_FLAG: false)."
)
SHORT_FLAGS = {"verbose": ("-v",)}
_REQUIRED = object()


class CommandLine:
    """The parser of one command: the parameters of ``target`` (a function or a dataclass)."""

    def __init__(self, target: Callable, prog: str, description: str | None = None) -> None:
        import docstring_parser
        from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

        doc = docstring_parser.parse(inspect.getdoc(target) or "")
        self.parser = ArgumentParser(
            prog=prog,
            description=description or doc.short_description,
            epilog=SPELLING_NOTE,
            exit_on_error=False,
            print_config=None,  # ours below: it prints what the command receives
        )
        self.parser.add_argument(
            "--config", action=ActionConfigFile, help="YAML file of settings (keys = flag names)"
        )
        self.parser.add_argument(
            "--print_config",
            action="store_true",
            help="print the resolved settings as YAML and exit",
        )
        self.flags = {"--config", "--print_config", "--help"}
        self.lists: set[str] = set()
        helps = {param.arg_name: param.description for param in doc.params}
        hints = typing.get_type_hints(target)
        for name, default in _parameters(target):
            hint = hints[name]
            if default is _REQUIRED:
                self.parser.add_argument(name, type=hint, help=helps.get(name))
                continue
            options: dict[str, Any] = {"default": default, "help": helps.get(name)}
            kind = _without_none(hint)
            if kind is bool:
                options.update(action=ActionYesNo, nargs="?")
                self.flags.add(f"--no_{name}")
            elif typing.get_origin(kind) is list:
                (item,) = typing.get_args(kind)
                options.update(type=_items_of(item), nargs="+")
                self.lists.add(name)
            else:
                options["type"] = hint
            self.parser.add_argument(f"--{name}", *SHORT_FLAGS.get(name, ()), **options)
            self.flags.add(f"--{name}")

    def parse(self, argv: list[str]) -> tuple[dict, bool]:
        """The parameter values, and whether ``--print_config`` was asked for."""
        try:
            namespace = self.parser.parse_args(self._underscored(argv))
        except ArgumentError as exc:
            raise UserError(parse_error_line(str(exc))) from None
        values = namespace.as_dict()
        values.pop("config", None)
        for name in self.lists:
            if isinstance(values[name], list):  # one list per item or per [a, b] given
                values[name] = [x for got in values[name] for x in _as_list(got)]
        return values, values.pop("print_config")

    def _underscored(self, argv: list[str]) -> list[str]:
        """``--num-samples=3`` → ``--num_samples=3``; a token whose underscored name is no flag
        (a value such as ``--`` in a stop string) is left alone."""
        out = []
        for arg in argv:
            name, sep, value = arg.partition("=")
            underscored = "--" + name[2:].replace("-", "_")
            known = arg.startswith("--") and underscored in self.flags
            out.append(underscored + sep + value if known else arg)
        return out


def parse_config(
    cls: type[T], argv: list[str], prog: str, description: str | None = None
) -> tuple[T, bool]:
    """The dataclass ``cls`` built from its defaults, ``--config`` and flags; and whether to
    print it instead of running."""
    values, print_config = CommandLine(cls, prog, description).parse(argv)
    return cls(**values), print_config


def call_with_arguments(function: Callable[..., None], argv: list[str], prog: str) -> None:
    """Call ``function`` with its parameters parsed from ``argv`` (or print them, with
    ``--print_config``)."""
    values, print_config = CommandLine(function, prog).parse(argv)
    if print_config:
        print(to_yaml(values), end="")
        return
    function(**values)


def to_yaml(settings) -> str:
    """Settings (a dataclass or a dict) as the YAML ``--config`` reads."""
    if dataclasses.is_dataclass(settings):
        settings = dataclasses.asdict(settings)
    return yaml.safe_dump(settings, sort_keys=False, allow_unicode=True)


def parse_error_line(message: str) -> str:
    """jsonargparse explains a bad value over many lines (every member of a Union it tried):
    keep what was wrong, where, and what it should be."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = " ".join(lines)
    if match := re.search(r"File does not exist: '([^']+)'", text):
        return f"config file {shown_path(match.group(1))} does not exist"
    if match := re.match(r"Option '([^']+)' is not accepted", text):
        return f"unknown setting {match.group(1)!r} in the config file; see --help for the settings"
    if text.startswith("Problems parsing config"):
        return f"the --config file is not valid YAML: {' '.join(lines[1:2])}"
    if text.startswith("Unexpected config"):
        return "the --config file must be a mapping of setting: value"
    if match := re.match(r"argument (--\w+)\S*: invalid _boolean_type value: (.*)", text):
        return f"{match.group(1)} {match.group(2)} is not true or false"
    key = re.match(r'Parser key "([^"]+)"', text)
    value = re.search(r"(?:Given|Got) value: (.*?)(?:$| Given)", text)
    if key and value:
        expected = _expected(text)
        return f"--{key.group(1)} {value.group(1).strip()!r} is not {expected}; see --help"
    return f"{text}; see --help"


def _expected(text: str) -> str:
    text = text.split("Given value type")[0]
    if match := re.search(r"Literal\[([^\]]*)\]", text):
        return "one of " + match.group(1).replace("'", "")
    names = re.findall(r"<class '(\w+)'>", text)
    names = ["null" if name == "NoneType" else name for name in dict.fromkeys(names)]
    return "a valid " + " or ".join(names) if names else "valid"


def _items_of(kind: type) -> Callable[[Any], list]:
    """A list option's item type: ``10`` or, as in the rest of jsonargparse, ``[10, 20]``."""

    def parse(token):
        if isinstance(token, str) and token.startswith("["):
            try:
                token = yaml.safe_load(token)
            except yaml.YAMLError:
                raise ValueError(token) from None  # argparse: "invalid int value: '[1,'"
        return [kind(item) for item in _as_list(token)]

    parse.__name__ = kind.__name__  # what argparse names in "invalid int value: 'x'"
    return parse


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _parameters(target: Callable) -> list[tuple[str, Any]]:
    """``(name, default)`` of each parameter; ``_REQUIRED`` when it has none."""
    if dataclasses.is_dataclass(target):
        out = []
        for field in dataclasses.fields(target):
            default = field.default
            if field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            out.append((field.name, _REQUIRED if default is dataclasses.MISSING else default))
        return out
    return [
        (param.name, _REQUIRED if param.default is param.empty else param.default)
        for param in inspect.signature(target).parameters.values()
    ]


def _without_none(annotation):
    """``X | None`` → ``X``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        return inner
    return annotation
