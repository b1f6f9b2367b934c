"""How much of a causal attention map a sparse store keeps, measured on real traces.

A sparse store (``--attention-format sparse --min-attention W``) keeps the lower-triangle
positions ``(i, j <= i)`` whose largest weight over the heads is at least ``W``, and the
diagonal (every head's weight there; ``extraction/store/sparse.py``), so every graph with a
threshold >= W is exact, head mode ``any`` included. This
script counts those positions per store, threshold and sequence-length bin, how the count grows
with the number of heads (the max over a random subset of k heads), and records the stores'
(prompt, answer) token lengths: the reference ``python -m extraction estimate`` reads.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/attention_density.py /work/stores/smollm2_demo \
        /work/stores/smollm2_triviaqa /work/stores/gemma3_demo \
        --json extraction/data/estimate_reference.json
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.store import TraceStore

THRESHOLDS = (0.005, 0.01, 0.02, 0.05, 0.1)
LENGTH_BINS = (0, 32, 48, 64, 96, 128, 256, 512, 1024, 10**9)


def measure(store: TraceStore, limit: int | None) -> dict:
    """Kept positions per threshold: per length bin, and with the max over k random heads."""
    heads = store.manifest.model.num_heads
    bins = {w: {} for w in THRESHOLDS}
    by_heads = {w: [0] * heads for w in THRESHOLDS}
    total = 0
    generator = torch.Generator().manual_seed(0)
    qids = store.question_ids[:limit]
    for qid in tqdm(qids, desc=store.root.name, unit="trace"):
        seq_len = store.row(qid).seq_len
        positions = seq_len * (seq_len + 1) // 2
        upper = next(upper for upper in LENGTH_BINS[1:] if seq_len <= upper)
        lower = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
        diagonal = torch.eye(seq_len, dtype=torch.bool)[lower]  # [positions]
        for block in store.stored_blocks:
            attention = store.attention(qid, block).float()[:, lower]  # [heads, positions]
            order = attention[torch.randperm(heads, generator=generator)]
            running = order.cummax(dim=0).values  # row k-1: the max over k random heads
            for w in THRESHOLDS:
                counts = ((running >= w) | diagonal).sum(dim=1).tolist()
                for k, count in enumerate(counts):
                    by_heads[w][k] += count
                entry = bins[w].setdefault(
                    upper, {"kept": 0, "positions": 0, "length_sum": 0, "blocks": 0}
                )
                entry["kept"] += counts[-1]
                entry["positions"] += positions
                entry["length_sum"] += seq_len
                entry["blocks"] += 1
            total += positions
    rows = [store.row(qid) for qid in qids]
    return {
        "store": store.root.name,
        "model": store.manifest.settings.model,
        "heads": heads,
        "blocks": len(store.stored_blocks),
        "traces": len(qids),
        "lengths": [[row.n_prompt_tokens, row.n_answer_tokens] for row in rows],
        "density": {
            str(w): {
                "fraction": sum(b["kept"] for b in bins[w].values()) / total,
                "fraction_by_heads": [count / total for count in by_heads[w]],
                "bins": [
                    {"max_length": upper, **entry} for upper, entry in sorted(bins[w].items())
                ],
            }
            for w in THRESHOLDS
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="first N traces of each store")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    results = [measure(TraceStore(path), args.limit) for path in args.stores]
    for result in results:
        for w, got in result["density"].items():
            by_length = {
                f"<={b['max_length']}": round(b["kept"] / b["positions"], 3) for b in got["bins"]
            }
            heads = [round(f, 3) for f in got["fraction_by_heads"]]
            print(
                f"{result['store']} ({result['traces']} traces, {result['heads']} heads) W={w}: "
                f"{got['fraction']:.4f} of positions kept; by length {by_length}; "
                f"max over 1..{result['heads']} heads {heads}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"stores": results}) + "\n")


if __name__ == "__main__":
    main()
