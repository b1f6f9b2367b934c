"""The byte arithmetic of ``python -m extraction estimate`` against stores actually written: each
store's shard files and index, against the estimate for that store's own (prompt, answer)
lengths, model shapes and storage dtype.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/estimate_vs_stores.py /work/stores/smollm2_demo \
        /work/stores/smollm2_triviaqa /work/stores/smollm2_truthfulqa /work/stores/gemma3_demo
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.estimate import LengthProfile, StoreLayout, store_bytes
from extraction.store import TraceStore


def compare(path: str) -> str:
    store = TraceStore(path)
    settings, model = store.manifest.settings, store.manifest.model
    rows = [store.rows[qid] for qid in store.question_ids]
    profile = LengthProfile(
        tuple((row.n_prompt_tokens, row.n_answer_tokens) for row in rows), store.root.name
    )
    itemsize = getattr(torch, settings.storage_dtype or "float16").itemsize
    layout = StoreLayout(
        len(settings.attention_blocks), model.num_heads, model.hidden_size, itemsize
    )
    estimate = sum(store_bytes(layout, profile, len(rows)).values())
    written = sum(path.stat().st_size for path in store.shard_files)
    written += (store.root / "index.jsonl").stat().st_size
    return (
        f"{store.root.name}: {len(rows)} traces, mean {profile.mean_tokens:.1f} tokens; written "
        f"{written / 1e6:.2f} MB, estimate {estimate / 1e6:.2f} MB ({estimate / written - 1:+.2%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+")
    for path in parser.parse_args().stores:
        print(compare(path))


if __name__ == "__main__":
    main()
