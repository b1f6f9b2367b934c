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
import itertools
import json
import logging
import re
import types
import typing
from argparse import ArgumentError
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from common.errors import UserError, shown_path

log = logging.getLogger(__name__)

T = TypeVar("T")

SPELLING_NOTE = (
    "Every option is also a key of the --config YAML. A flag may be written with hyphens "
    "(--num-samples = --num_samples); a boolean flag alone means true (--no_FLAG: false)."
)
SHORT_FLAGS = {"verbose": ("-v",)}
_REQUIRED = object()
# Option names that said layer where a transformer block is meant, before issue 22. A command
# that has both names (GraphSpec keeps the old ones as deprecated keys of old config files) reads
# a flag of either as the new name and sets the old one to UNSET, so a flag always wins over a
# config file's old key; a config file's old key, when set, wins over the new key's default.
OLD_OPTION_NAMES = {"layer": "block", "layers": "blocks", "hidden_layer": "hidden_block"}
UNSET = "unset"


class CommandLine:
    """The parser of one command: the parameters of ``target`` (a function or a dataclass); a
    parameter whose type is a class (a dataclass such as ``GraphSpec``) gets its fields as
    nested options (``--graph.top_k``)."""

    def __init__(
        self,
        target: Callable,
        prog: str,
        description: str | None = None,
        positional: bool = True,
    ) -> None:
        """``positional``: a parameter without a default is a positional argument (else a
        required ``--flag``)."""
        import docstring_parser
        from jsonargparse import ActionConfigFile, ArgumentParser

        doc = docstring_parser.parse(inspect.getdoc(target) or "")
        self.parser = ArgumentParser(
            prog=prog,
            description=description or doc.short_description,
            epilog=SPELLING_NOTE,
            exit_on_error=False,
            allow_abbrev=False,
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
        self.nested: list[str] = []
        helps = {param.arg_name: param.description for param in doc.params}
        hints = typing.get_type_hints(target)
        for name, default in _parameters(target):
            hint = hints[name]
            if _is_nested(_without_none(hint)):
                self.parser.add_class_arguments(
                    _without_none(hint), name, default=_defaults(default)
                )
                self.nested.append(name)
            elif default is _REQUIRED and positional:
                self.parser.add_argument(name, type=hint, help=helps.get(name))
            elif default is _REQUIRED:
                self.parser.add_argument(
                    f"--{name}", type=hint, required=True, help=helps.get(name)
                )
            else:
                flags = (f"--{name}", *SHORT_FLAGS.get(name, ()))
                self.parser.add_argument(*flags, type=hint, default=default, help=helps.get(name))

    def parse(self, argv: list[str]) -> tuple[dict, bool]:
        """The parameter values, and whether ``--print_config`` was asked for."""
        try:
            namespace = self.parser.parse_args(normalise(self.parser, argv))
            instances = self.parser.instantiate_classes(namespace)
        except ArgumentError as exc:
            raise UserError(parse_error_line(str(exc))) from None
        values = namespace.as_dict()
        values.pop("config", None)
        for name in self.nested:
            values[name] = instances[name]
        return values, values.pop("print_config")


def normalise(parser, argv: list[str]) -> list[str]:
    """``argv`` in the one dialect, as jsonargparse reads it: ``--num-samples`` →
    ``--num_samples``, a bare boolean flag → ``--flag true`` (``--no_flag`` → ``--flag false``),
    a list's items one after another → one YAML list (``--layers 10 20`` → ``--layers [10, 20]``,
    items of ``[a,b]`` spliced in). An abbreviated flag is refused (``--trainer.max_epoch``):
    no option is ever matched by a prefix. A token that is no flag of ``parser`` (a value, a
    subclass's ``--model.init_args.*``) is left alone."""
    hints = _option_hints(parser)
    out: list[str] = []
    tokens = list(argv)
    while tokens:
        arg = tokens.pop(0)
        name, equals, value = arg.partition("=")
        given = value if equals else (tokens[0] if tokens else None)
        if given == UNSET and name.rpartition(".")[2] in OLD_OPTION_NAMES:
            # an old name unset by a first normalise (a command that parses twice)
            out += [arg] if equals else [arg, tokens.pop(0)]
            continue
        flag, old = _renamed(_spelled(name, hints), hints)
        if old is not None:
            out += [old, UNSET]
        if flag is None:
            out.append(arg)
            continue
        negated = flag.startswith("--no_") and flag not in hints
        if negated:
            flag = "--" + flag[5:]
        hint = hints[flag]
        if equals or hint is None:
            out.append(flag + equals + value if equals else flag)
            continue
        if _is_bool(hint):
            given = tokens.pop(0) if tokens and not _OPTION.match(tokens[0]) else None
            out += [flag, "false" if negated else (given or "true")]
        elif _list_kind(hint):
            items = []
            while tokens and not _OPTION.match(tokens[0]):
                items.append(tokens.pop(0))
            out += [flag, *_as_yaml_list(items, hint)]
        else:
            out.append(flag)
    return out


_OPTION = re.compile(r"-{1,2}[A-Za-z]")


def _option_hints(parser) -> dict[str, Any]:
    """Each option string of ``parser`` (and of its subcommand, when one is chosen later: the
    caller passes that parser) → its type hint; None for options that take no typed value."""
    hints: dict[str, Any] = {}
    for action in parser._actions:
        for option in action.option_strings:
            hints[option] = getattr(action, "_typehint", None)
    return hints


def _spelled(name: str, hints: dict[str, Any]) -> str | None:
    """The flag ``name`` means, as ``hints`` spells it; None for a token that is no flag. A
    prefix of a flag is a one-line error."""
    if not _OPTION.match(name):
        return None
    if name in hints:
        return name
    underscored = "--" + name.lstrip("-").replace("-", "_")
    if underscored in hints:
        return underscored
    if underscored.startswith("--no_") and _is_bool(hints.get("--" + underscored[5:])):
        return underscored
    longer = sorted(flag for flag in hints if flag.startswith(underscored))
    if longer:
        raise UserError(
            f"unknown option {name}; did you mean {longer[0]}? (options are never abbreviated)"
        )
    return None


def _renamed(flag: str | None, hints: dict[str, Any]) -> tuple[str | None, str | None]:
    """``flag`` under its new name (:data:`OLD_OPTION_NAMES`) when the command has that, and
    the old name to set to :data:`UNSET` (None when the command has no old name of it)."""
    if flag is None:
        return None, None
    prefix, dot, last = flag.rpartition(".")
    new = {old: f"{prefix}{dot}{name}" for old, name in OLD_OPTION_NAMES.items()}
    old = {name: f"{prefix}{dot}{old}" for old, name in OLD_OPTION_NAMES.items()}
    if last in new and new[last] in hints:
        log.warning("%s is deprecated; use %s", flag, new[last])
        return new[last], flag
    if last in old and old[last] in hints:
        return flag, old[last]
    return flag, None


def _is_bool(hint) -> bool:
    return hint is not None and _without_none(hint) is bool


def _list_kind(hint) -> str | None:
    """``"list"`` for a list or tuple option, ``"union"`` for one a list is only one choice of
    (``tuple[int, ...] | Literal['all'] | None``), else None."""
    if hint is None:
        return None
    if typing.get_origin(_without_none(hint)) in (list, tuple):
        return "list"
    args = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    )
    return "union" if any(typing.get_origin(arg) in (list, tuple) for arg in args) else None


def _as_yaml_list(items: list[str], hint) -> list[str]:
    """The tokens after a list option as the one value jsonargparse reads."""
    if not items:
        return []
    single = items[0]
    if len(items) == 1 and (
        single.startswith("[")
        or (
            _list_kind(hint) == "union"
            and (single.lower() in ("null", "none") or not _is_item(single, hint))
        )
    ):
        return [single]
    values = []
    for item in items:
        if item.startswith("["):
            try:
                parsed = yaml.safe_load(item)
            except yaml.YAMLError:
                return items  # the parser names the bad value
            values += parsed if isinstance(parsed, list) else [parsed]
        else:
            values.append(item)
    return ["[" + ", ".join(_yaml_item(value) for value in values) + "]"]


def _is_item(token: str, hint) -> bool:
    """Whether a lone token of a union option is a list item (``5`` of ``--graph.blocks 5``)
    rather than another member's value (``all``; ``2`` of Lightning's ``--trainer.devices``,
    ``list[int] | str | int``: a union with a plain member keeps a lone value as it is)."""
    args = typing.get_args(hint)
    if any(arg in (int, float, str) for arg in args):
        return False
    literals = [
        value
        for arg in args
        if typing.get_origin(arg) is typing.Literal
        for value in typing.get_args(arg)
    ]
    return token not in map(str, literals)


def _yaml_item(value) -> str:
    if isinstance(value, str) and not re.fullmatch(r"[\w.+-]+", value):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else json.dumps(value)


def _is_nested(kind) -> bool:
    """A parameter whose options are the fields of a class: a dataclass (``GraphSpec``)."""
    return dataclasses.is_dataclass(kind) and isinstance(kind, type)


def _defaults(default):
    """A nested parameter's default (a dataclass instance), or None."""
    return None if default is _REQUIRED else default


def parse_config(
    cls: type[T], argv: list[str], prog: str, description: str | None = None
) -> tuple[T, bool]:
    """The dataclass ``cls`` built from its defaults, ``--config`` and flags; and whether to
    print it instead of running."""
    values, print_config = CommandLine(cls, prog, description).parse(argv)
    return cls(**values), print_config


def call_with_arguments(
    function: Callable[..., None], argv: list[str], prog: str, positional: bool = True
) -> None:
    """Call ``function`` with its parameters parsed from ``argv`` (or print them, with
    ``--print_config``)."""
    values, print_config = CommandLine(function, prog, positional=positional).parse(argv)
    if print_config:
        print(to_yaml(values), end="")
        return
    function(**values)


def to_yaml(settings) -> str:
    """Settings (a dataclass or a dict, which may hold dataclasses) as the YAML ``--config``
    reads."""
    if dataclasses.is_dataclass(settings):
        settings = dataclasses.asdict(settings)
    settings = {
        key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        for key, value in settings.items()
    }
    return yaml.safe_dump(settings, sort_keys=False, allow_unicode=True)


def parse_error_line(message: str) -> str:
    """The one error shortener of every stage: jsonargparse explains a bad value over many lines
    (every member of a Union it tried, every class path): keep what was wrong, where, and what
    it should be."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    text = " ".join(lines)
    if problem := _class_path_problem(lines):
        return problem
    if match := re.search(r"File does not exist: '([^']+)'", text):
        return f"config file {shown_path(match.group(1))} does not exist"
    if match := re.match(r"Option '([^']+)' is not accepted", text):
        return f"unknown setting {match.group(1)!r} in the config file; see --help for the settings"
    if text.startswith("Problems parsing config"):
        return f"the --config file is not valid YAML: {' '.join(lines[1:2])}"
    if text.startswith("Unexpected config"):
        return "the --config file must be a mapping of setting: value"
    key = re.match(r'Parser key "([^"]+)"', text)
    value = re.search(r"(?:Given|Got) value: (.*?)(?:$| Given)", text)
    if key and value:
        expected = _expected(text)
        return f"--{key.group(1)} {value.group(1).strip()!r} is not {expected}; see --help"
    return f"{text}; see --help"


def _class_path_problem(lines: list[str]) -> str | None:
    """``--model bad.Class: <the cause>`` from a subclass option's explanation, or None."""
    key = re.match(r'Parser key "([^"]+)"', lines[0]) if lines else None
    for i, line in enumerate(lines):
        problem = re.match(r"- Problem with given class_path '([^']+)':", line)
        if problem is None:
            continue
        cause = list(
            itertools.takewhile(lambda detail: not detail.startswith("- "), lines[i + 1 :])
        )
        return f"--{key.group(1) if key else 'model'} {problem.group(1)}: {' '.join(cause)}"
    return None


def _expected(text: str) -> str:
    text = text.split("Given value type")[0]
    if match := re.search(r"Literal\[([^\]]*)\]", text):
        return "one of " + match.group(1).replace("'", "")
    names = re.findall(r"<class '(\w+)'>", text)
    names = ["null" if name == "NoneType" else name for name in dict.fromkeys(names)]
    if names == ["bool"]:
        return "true or false"
    return "a valid " + " or ".join(names) if names else "valid"


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
    """``X | None`` → ``X`` (a union of more than one other member stays as it is)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        others = [arg for arg in args if arg is not type(None)]
        return others[0] if len(others) == 1 else annotation
    return annotation
