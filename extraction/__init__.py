"""Stage 1: final-state traces of a causal LM answering questions (``python -m extraction``).

Kept import-light: ``graphs`` and ``training`` read stores through ``extraction.store`` and must
not pull in ``transformers``. The pieces every stage shares are exported here: the one-line user
error and the CLI runner that prints it, the command-line dialect, atomic file writes; and what
the later stages use besides the store: a store's labels (:func:`label_source`) and the answer
similarities the sampling detectors share with labelling; the thread policy every entry point
sets before torch loads (:func:`set_thread_policy`) and how an error names a path.
"""

from extraction.cli_config import call_with_arguments, parse_config, parse_error_line, to_yaml
from extraction.cli_runner import run_command, run_commands
from extraction.errors import UserError, shown_path
from extraction.files import atomic_open, atomic_path, atomic_write_text, read_json, save_figure
from extraction.judgements import LabelSource, label_source
from extraction.labels import embedding_similarities, rougeL_similarities, sentence_embeddings
from extraction.threads import set_thread_policy

__all__ = [
    "LabelSource",
    "UserError",
    "atomic_open",
    "atomic_path",
    "atomic_write_text",
    "call_with_arguments",
    "embedding_similarities",
    "label_source",
    "parse_config",
    "parse_error_line",
    "read_json",
    "rougeL_similarities",
    "run_command",
    "run_commands",
    "save_figure",
    "sentence_embeddings",
    "set_thread_policy",
    "shown_path",
    "to_yaml",
]
