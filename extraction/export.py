"""The seed's pickle batches, as an explicit export for existing analysis code.

``{model}_{dataset}_batch_{num:04d}.pkl``: a list of the seed's six-field dicts with numpy
arrays (float32, lists ordered by layer). Pickle runs code when loaded, so reading one back
needs ``trust_pickle=True``; the store itself never uses pickle.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from common import UserError, atomic_open
from extraction.store import TraceStore


def export_pickle(
    store_dir: str | Path, output_dir: str | Path | None = None, batch_size: int = 500
) -> list[Path]:
    store = TraceStore(store_dir)
    if batch_size < 1:
        raise UserError("--batch_size must be at least 1")
    out = Path(output_dir) if output_dir else store.root / "pickle"
    out.mkdir(parents=True, exist_ok=True)
    prefix = store.manifest.settings.file_prefix
    written = []
    ids = store.question_ids
    for number, start in enumerate(range(0, len(ids), batch_size)):
        records = [store[qid].seed_record() for qid in ids[start : start + batch_size]]
        path = out / f"{prefix}_batch_{number:04d}.pkl"
        with atomic_open(path, "wb") as handle:
            pickle.dump(records, handle, protocol=pickle.HIGHEST_PROTOCOL)
        written.append(path)
    return written


def load_pickle_batch(path: str | Path, trust_pickle: bool = False) -> list[dict]:
    if not trust_pickle:
        raise UserError(
            f"{path} is a pickle, which can run arbitrary code when loaded; pass --trust_pickle "
            "(trust_pickle=True) only for files you made yourself"
        )
    with Path(path).open("rb") as handle:
        return pickle.load(handle)
