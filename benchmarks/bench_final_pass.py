"""Peak RSS and time of the final-state pass on long sequences (docs/BENCHMARKS.md).

    git worktree add /tmp/before <commit before the hooks>
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_final_pass.py --code /tmp/before . \
        --lengths 256 512 1024 2048 --out results.json

One sequence of ``T`` real tokens (TruthfulQA questions and best answers in the seed's
``Question: ...\\nAnswer: ...`` pattern; the last ``--answer-tokens`` count as the answer), the
packaged SmolLM2 in float32, every block kept, batch 1. Each length and each checkout (``--code``,
side by side, length by length) runs in its own process, so its peak RSS (``ru_maxrss``) is that
pass's alone: the model is loaded and warmed up on a short sequence first (``baseline``), then
one pass at ``T`` runs until its tensors are what the writer stores (attention packed, hidden
states cast to ``--dtype``). ``sha256`` hashes those tensors, to show the checkouts store the same
bytes. Before the per-block hooks the pass returned every block's ``[heads, T, T]`` float32
attention and the writer cast and packed it; the script does that for such a checkout.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRUTHFULQA = REPO.parent / "shared" / "data" / "truthfulqa" / "TruthfulQA.csv"
MODEL = "smollm2_135M"
WARM_UP_TOKENS = 48  # 16 prompt tokens and the answer's 32


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_tokens(tokenizer, n_tokens: int) -> list[int]:
    """The first ``n_tokens`` tokens of TruthfulQA's questions and best answers, in order."""
    text = []
    with TRUTHFULQA.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text.append(f"Question: {row['Question']}\nAnswer: {row['Best Answer']}\n")
            ids = tokenizer("".join(text))["input_ids"]
            if len(ids) >= n_tokens:
                return ids[:n_tokens]
    raise SystemExit(f"error: TruthfulQA has fewer than {n_tokens} tokens")


def measure_one(seq_len: int, answer_tokens: int, dtype_name: str) -> dict:
    """One pass at ``seq_len`` in this process, with the ``extraction`` first on the path."""
    import torch

    from extraction.final_state import final_state_pass
    from extraction.models import load_model
    from extraction.store.layout import pack_causal

    dtype = getattr(torch, dtype_name)
    packs_itself = "storage_dtype" in inspect.signature(final_state_pass).parameters
    extra = {"storage_dtype": dtype} if packs_itself else {}

    def stored_pass(tokens: list[int]) -> list[torch.Tensor]:
        """The tensors the writer stores, in a fixed order."""
        n_prompt = max(1, len(tokens) - answer_tokens)
        (state,) = final_state_pass(loaded.model, [tokens], [n_prompt], pad_id, blocks, **extra)
        attentions = [state.attentions[b] for b in sorted(state.attentions)]
        if not packs_itself:
            attentions = [pack_causal(a.to(dtype)) for a in attentions]
        hidden = [state.hidden_states[i].to(dtype) for i in sorted(state.hidden_states)]
        return [*attentions, *hidden, state.token_logprobs, state.token_entropy]

    loaded = load_model(MODEL, quantization="none", torch_dtype="float32")
    pad_id = loaded.tokenizer.pad_token_id
    blocks = list(range(loaded.num_layers))
    tokens = real_tokens(loaded.tokenizer, seq_len)
    stored_pass(tokens[:WARM_UP_TOKENS])
    baseline = peak_rss_mib()
    start = time.perf_counter()
    stored = stored_pass(tokens)
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    digest = hashlib.sha256()
    for tensor in stored:
        digest.update(tensor.contiguous().view(torch.uint8).numpy())
    return {
        "seq_len": seq_len,
        "seconds": round(seconds, 2),
        "baseline_rss_mib": round(baseline),
        "peak_rss_mib": round(peak),
        "stored_attention_mib": round(sum(a.nbytes for a in stored[: len(blocks)]) / 2**20, 1),
        "sha256": digest.hexdigest(),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="float16", help="storage dtype")
    parser.add_argument(
        "--code", type=Path, nargs="+", default=[REPO], help="checkouts to import extraction from"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.one is not None:
        sys.path.insert(0, str(args.code[0].resolve()))
        print(json.dumps(measure_one(args.one, args.answer_tokens, args.dtype)))
        return
    # Set in this parent only: each child imports ``extraction`` from its --code checkout first.
    from common import set_thread_policy

    set_thread_policy()  # the children inherit it; they import torch, this process does not
    results = []
    for seq_len in args.lengths:
        for code in args.code:
            command = [
                sys.executable, __file__, "--one", str(seq_len), "--code", str(code),
                "--answer-tokens", str(args.answer_tokens), "--dtype", args.dtype,
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"error: T={seq_len} ({code}) failed:\n{done.stderr[-2000:]}")
            results.append({"code": str(code), **json.loads(done.stdout.strip().splitlines()[-1])})
            print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
