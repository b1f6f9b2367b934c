"""The extraction bar and the run's thread count (tiny model)."""

from __future__ import annotations

import re
from itertools import groupby

from transformers.utils import logging as hf_logging

from common import choose_threads, free_cores
from extraction.progress import extraction_bar
from tests.helpers import run_extraction, tiny_args


def test_threads_are_the_cores_the_load_leaves_at_least_one():
    assert free_cores(2, 0.2) == 2
    assert free_cores(2, 1.4) == 1
    assert free_cores(2, 14.0) == 1
    assert free_cores(16, 3.6) == 12


def test_omp_num_threads_is_the_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == (3, "OMP_NUM_THREADS")


def test_library_bars_are_off_while_the_bar_is_up():
    hf_logging.enable_progress_bar()
    with extraction_bar(total=2, desc="Extracting", unit="q", position=0) as bar:
        assert not hf_logging.is_progress_bar_enabled()
        bar.written(2)
    assert hf_logging.is_progress_bar_enabled()


def test_several_generations_show_each_trace_as_its_answer_comes(tiny_model_dir, tmp_path, capsys):
    """K = 3, 6 questions (18 traces, one window): the beam answers (one generation batch),
    then each question's two samples, before its batch's traces are written."""
    sampling = ["--num-generations", 3, "--do-sample", "--temperature", 1.0]
    assert run_extraction(*tiny_args(tiny_model_dir, tmp_path / "s"), *sampling) == 0
    shown = re.findall(r"answered (\d+)/18", capsys.readouterr().err)
    assert [int(n) for n, _ in groupby(shown)] == [0, 6, 8, 10, 12, 14, 16, 18]
