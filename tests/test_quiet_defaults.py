"""What a new user reads on the default path: whole help summaries, and errors that name a
missing path where it was looked for."""

from __future__ import annotations

import pytest

from extraction import UserError, read_json
from training.cli import main as training_main
from training.lightning_cli import SUMMARIES


def test_training_help_summaries_are_whole(capsys):
    assert training_main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for command, summary in SUMMARIES.items():
        assert f"{command} {summary}" in text
        assert summary.endswith(".")


def test_a_missing_json_file_is_named_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=f"report.json \\({tmp_path}/report.json\\) does not exist"):
        read_json("report.json")
