"""One command-line dialect (common.dialect): options from signatures and docstrings, one
spelling for a flag and its YAML key, the seed's spellings accepted, one-line errors."""

from __future__ import annotations

import dataclasses
import inspect
import sys

import docstring_parser
import pytest
import yaml

from common import run_command
from extraction import cli
from extraction.cli import main
from extraction.config import ExtractionConfig
from extraction.facts import write_questions
from graphs.cli import main as graphs_main
from tests.helpers import assert_one_line_errors

SUBCOMMANDS = {
    "inspect": cli.inspect,
    "verify": cli.verify,
    "label": cli.label,
    "export-pickle": cli.export_pickle,
    "questions facts": write_questions,
}


def printed(capsys, *args: str) -> dict:
    """The settings ``python -m extraction ARGS --print_config`` resolves to."""
    assert main([*args, "--print_config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def documented(target) -> list[str]:
    return [param.arg_name for param in docstring_parser.parse(inspect.getdoc(target)).params]


@pytest.mark.parametrize("command", [None, *SUBCOMMANDS])
def test_every_option_is_documented_and_every_documented_option_is_accepted(command, capsys):
    target = SUBCOMMANDS.get(command, ExtractionConfig)
    if dataclasses.is_dataclass(target):
        names = [field.name for field in dataclasses.fields(target)]
    else:
        names = list(inspect.signature(target).parameters)
    assert documented(target) == names
    assert main([*(command.split() if command else []), "--help"]) == 0
    help_text = capsys.readouterr().out
    for name in names:
        assert (f"--{name}" if name != "path" else "path") in help_text
    assert "--config" in help_text and "--print_config" in help_text


def test_seed_flags_and_the_yaml_keys_have_one_spelling(capsys, tmp_path):
    seed = printed(
        capsys, "--model", "llama2_chat_7B", "--dataset", "triviaqa", "--num-samples", "3"
    )
    assert (seed["model"], seed["dataset"], seed["num_samples"]) == (
        "llama2_chat_7B",
        "triviaqa",
        3,
    )
    assert printed(capsys, "--num_samples", "3") == printed(capsys, "--num-samples=3")

    config = tmp_path / "run.yaml"
    config.write_text("num_samples: 5\nbatch_size: 2\nlayers: [1, 2]\n", encoding="utf-8")
    from_file = printed(capsys, "--config", str(config))
    assert (from_file["num_samples"], from_file["batch_size"], from_file["layers"]) == (
        5,
        2,
        [1, 2],
    )
    overridden = printed(capsys, "--config", str(config), "--num_samples", "7")
    assert (overridden["num_samples"], overridden["batch_size"]) == (7, 2)
    # What --print_config prints is itself a config file that gives the same settings.
    config.write_text(yaml.safe_dump(overridden), encoding="utf-8")
    assert printed(capsys, "--config", str(config)) == overridden


@pytest.mark.parametrize(
    ("args", "key", "value"),
    [
        (["--overwrite"], "overwrite", True),
        (["--overwrite", "true"], "overwrite", True),
        (["--overwrite", "false"], "overwrite", False),
        (["--no_early_stopping"], "early_stopping", False),
        (["--no-early-stopping"], "early_stopping", False),
        (["--chat-template"], "chat_template", True),
        (["-v"], "verbose", True),
        (["--layers", "10", "20"], "layers", [10, 20]),
        (["--layers", "3"], "layers", [3]),
        (["--layers", "[10,20]"], "layers", [10, 20]),
        (["--layers", "[10, 20]", "30"], "layers", [10, 20, 30]),
        (["--stop-strings", "Q:", "\n"], "stop_strings", ["Q:", "\n"]),
        (["--dataset-file", "q.jsonl"], "dataset_file", "q.jsonl"),
    ],
)
def test_boolean_list_and_hyphenated_spellings(capsys, args, key, value):
    assert printed(capsys, *args)[key] == value


def test_subcommands_take_config_files_and_print_their_settings(capsys, tmp_path):
    assert printed(capsys, "label", "STORE", "--from-file", "j.jsonl") == {
        "path": "STORE",
        "method": None,
        "from_file": "j.jsonl",
        "judge_model": None,
    }
    config = tmp_path / "export.yaml"
    config.write_text("path: STORE\nbatch_size: 3\n", encoding="utf-8")
    assert printed(capsys, "export-pickle", "--config", str(config)) == {
        "path": "STORE",
        "output": None,
        "batch_size": 3,
    }
    assert printed(capsys, "inspect", "x.pkl", "--trust-pickle")["trust_pickle"] is True


def test_parse_errors_are_one_line(capsys, tmp_path):
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("layers: [1,\n", encoding="utf-8")
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n", encoding="utf-8")
    cases = [
        "--num_samples x",
        "--nope 3",
        "--overwrite maybe",
        "--layers x",
        "--layers [1,",
        f"--config {not_yaml}",
        f"--config {a_list}",
        "inspect",
        "verify a b",
        "export-pickle STORE --batch_size many",
    ]
    assert_one_line_errors(main, cases, capsys)
    assert main(["--num_samples", "x"]) == 2
    assert "--num_samples 'x' is not a valid int or null" in capsys.readouterr().err
    assert main(["--config", str(not_yaml)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["--overwrite", "maybe"]) == 2
    assert "--overwrite 'maybe' is not true or false" in capsys.readouterr().err


def test_a_stage_without_a_default_command_names_its_commands(capsys):
    assert_one_line_errors(graphs_main, ["", "bogus"], capsys)
    assert graphs_main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and "build, inspect, verify, draw, compare" in err


def test_the_runner_turns_exits_into_statuses(capsys):
    def exits(code):
        return lambda argv: sys.exit(code)

    assert run_command("extraction", exits(None), []) == 0
    assert run_command("extraction", exits(3), []) == 3
    assert run_command("extraction", exits("a library gave up"), []) == 2
    assert capsys.readouterr().err == "error: a library gave up\n"


GCN = "configs/training/gcn.yaml"
BUILD = ["build", "--traces", "T"]
FIT = ["fit", "--config", GCN]
NO_BLOCK = ["--graph.block", "null"]  # the default spec's block 15, so blocks can be set
BENCH = ["benchmark", "--config", "configs/benchmark/demo.yaml"]


def _stage(name: str):
    from training.cli import main as training_main

    return {"extraction": main, "graphs": graphs_main, "training": training_main}[name]


def _printed(capsys, stage: str, argv: list[str]) -> dict:
    code = _stage(stage)([*argv, "--print_config"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return yaml.safe_load(out)


def _key(settings: dict, dotted: str):
    for part in dotted.split("."):
        settings = settings[part]
    return settings


# (stage, the command and what it needs, flags in each spelling, the key they set, its value)
SPELLINGS = [
    ("extraction", [], ["--num-samples", "3"], "num_samples", 3),
    ("extraction", [], ["--overwrite"], "overwrite", True),
    ("extraction", [], ["--layers", "10", "20"], "layers", [10, 20]),
    ("extraction", ["inspect", "x.pkl"], ["--trust-pickle"], "trust_pickle", True),
    ("graphs", BUILD, ["--split-seed", "3"], "split_seed", 3),
    ("graphs", BUILD, ["--force-reload"], "force_reload", True),
    ("graphs", BUILD, [*NO_BLOCK, "--graph.blocks", "5", "15"], "graph.blocks", [5, 15]),
    ("graphs", BUILD, [*NO_BLOCK, "--graph.blocks", "[5,15]"], "graph.blocks", [5, 15]),
    ("graphs", BUILD, ["--graph.layer", "null", "--graph.layers", "5", "15"], "graph.blocks", [5, 15]),  # noqa: E501  the names before issue 22
    ("graphs", BUILD, ["--graph.self-loops", "false"], "graph.self_loops", False),
    ("graphs", ["compare", "--traces", "T"], ["--graph.top-k", "4"], "graph.top_k", 4),
    ("training", FIT, ["--trainer.max-epochs", "3"], "trainer.max_epochs", 3),
    ("training", FIT, ["--trainer.enable-progress-bar"], "trainer.enable_progress_bar", True),
    ("training", FIT, ["--trainer.devices", "2"], "trainer.devices", "2"),  # a union's plain member
    ("training", FIT, ["--trainer.devices", "0", "1"], "trainer.devices", [0, 1]),
    ("training", FIT, ["--data.graph.block=null", "--data.graph.blocks", "0", "1"], "data.graph.blocks", [0, 1]),  # noqa: E501
    ("training", FIT, ["--data.graph.layer=null", "--data.graph.layers", "0", "1"], "data.graph.blocks", [0, 1]),  # noqa: E501
    ("training", ["sweep-layers", "--config", GCN], ["--layers", "0", "5"], "layers", [0, 5]),
    ("training", ["baselines", "--config", GCN], ["--reports", "a", "b"], "reports", ["a", "b"]),
    ("training", BENCH, ["--report-only"], "report_only", True),
    ("training", BENCH, ["--detectors", "a", "b"], "detectors", ["a", "b"]),
    ("training", BENCH, ["--graph-max-epochs", "3"], "graph_max_epochs", 3),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "command", "flags", "key", "value"), SPELLINGS)
def test_every_stage_speaks_one_dialect(capsys, stage, command, flags, key, value):
    """``-`` or ``_``, a bare boolean, a list as items or as ``[a,b]``: in every command."""
    assert _key(_printed(capsys, stage, [*command, *flags]), key) == value
    underscored = [
        "--" + flag[2:].replace("-", "_") if flag[:2] == "--" else flag for flag in flags
    ]
    if underscored != flags:
        assert _key(_printed(capsys, stage, [*command, *underscored]), key) == value


# (stage, the command, an abbreviated flag): no option is ever matched by a prefix
ABBREVIATIONS = [
    ("extraction", [], "--num_sample"),
    ("graphs", BUILD, "--graph.thresh"),
    ("graphs", ["draw", "--traces", "T"], "--question"),
    ("training", FIT, "--trainer.max_epoch"),
    ("training", ["sweep-layers", "--config", GCN], "--out"),
    ("training", BENCH, "--boot"),
]


@pytest.mark.parametrize(("stage", "command", "flag"), ABBREVIATIONS)
def test_no_stage_takes_an_abbreviated_flag(capsys, stage, command, flag):
    assert _stage(stage)([*command, flag, "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"unknown option {flag}" in err and "abbreviated" in err
