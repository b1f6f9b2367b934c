"""What a new user reads on the default path: whole help summaries, errors that name a missing
path where it was looked for, and a benchmark plot whose axis is on the data."""

from __future__ import annotations

import pytest

from common import UserError, read_json
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


def test_benchmark_axis_spans_the_data_and_chance():
    from training.benchmark_report import auroc_span

    assert auroc_span([0.61, 0.72], [0.05, 0.03]) == pytest.approx((0.47, 0.78))
    assert auroc_span([0.3, float("nan")], [0.1, float("nan")]) == pytest.approx((0.17, 0.53))
    assert auroc_span([0.99], [0.05]) == pytest.approx((0.47, 1.0))  # clipped to [0, 1]
