"""The extraction bar: traces written, a rate that means something from the first batch, and
the answers of the batch in progress.

The bar moves when a batch is committed (every trace of it at once) and its rate is the run's
average since the first batch started (``smoothing=0``): tqdm's default moving average would
take the first batch's seconds for one question's. The postfix counts the traces of the
questions in progress (a window of batches, whose beam answers are made together) as their
answers come: a ``--num_generations K`` question is K traces, and answering is the long part.
Libraries' own bars (transformers' ``Loading weights`` when a labeller loads its model mid-run)
are switched off while the bar is up, so none breaks into it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging


class ExtractionBar:
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.answered = 0
        self.traces = 0

    def start(self, traces: int) -> None:
        """The next ``traces`` traces are in progress."""
        self.answered, self.traces = 0, traces
        self._show()

    def answered_traces(self, count: int) -> None:
        """``count`` more traces in progress have their answer."""
        self.answered += count
        self._show()

    def written(self, traces: int) -> None:
        self.bar.update(traces)

    def _show(self) -> None:
        self.bar.set_postfix_str(f"answered {self.answered}/{self.traces}")


@contextmanager
def extraction_bar(total: int, desc: str, unit: str, position: int) -> Iterator[ExtractionBar]:
    """The bar, closed on the way out (also on an error, before its error line is printed)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with tqdm(
            total=total, desc=desc, unit=unit, dynamic_ncols=True, position=position, smoothing=0
        ) as bar:
            yield ExtractionBar(bar)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
