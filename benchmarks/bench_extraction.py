"""Extraction throughput, memory and bytes per trace: the seed's way against ours.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_extraction.py --num-samples 64 \
        --batch-sizes 8 32

(a) seed: one question at a time, ``generate(output_attentions=True, output_hidden_states=True,
    return_dict_in_generate=True)`` (eager attention, which those outputs need), the seed's
    "final step" record, pickled as float32 numpy batches.
(b) ours: ``python -m extraction`` (batched generation with SDPA, one eager forward pass for the
    final state, fp16 safetensors shards with packed causal attention).

Each side runs in its own process so peak RSS is its own. Answers are compared after the same
clean cut. Bytes per trace compare the seed's promised record (``[heads, T, T]`` and
``[T, hidden]`` per layer, float32 pickle: our ``export-pickle``) with our shards.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HALLUGRAPH_SHARED_DATA", REPO.parent / "shared" / "data"))
TRIVIAQA = SHARED_DATA / "triviaqa" / "validation.jsonl"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process: on a shared machine wall time also counts the
    time other jobs held the cores, CPU time counts only this side's work."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_seed(model_name: str, num_samples: int, out: Path) -> dict:
    """The seed's loop, as its documentation describes it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from extraction.generation import DEFAULT_STOP_STRINGS, _eos_ids, cut_answer
    from extraction.models import resolve_source
    from extraction.prompts import SEED_PROMPT
    from extraction.questions import load_questions

    source = resolve_source(model_name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(
        source, attn_implementation="eager", dtype=torch.float32
    ).eval()
    questions = load_questions("triviaqa", str(TRIVIAQA), num_samples)
    eos = _eos_ids(model, tokenizer)
    answers, batch = {}, []
    start, cpu_start = time.perf_counter(), cpu_seconds()
    for question in questions:
        prompt = SEED_PROMPT.format(question=question.question)
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(
                **inputs, num_beams=5, do_sample=False, max_new_tokens=64, early_stopping=True,
                return_dict_in_generate=True, output_attentions=True, output_hidden_states=True,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
        n_prompt = inputs["input_ids"].shape[1]
        sequence = output.sequences[0]
        final = len(output.hidden_states) - 1
        batch.append(
            {
                "question_id": question.question_id,
                "generated_answer_clean": tokenizer.decode(
                    sequence[n_prompt:], skip_special_tokens=True
                ).strip(),
                "hidden_states": [h[0].float().numpy() for h in output.hidden_states[final]],
                "attentions": [a[0].float().numpy() for a in output.attentions[final]],
                "tokens": sequence.numpy(),
                "tokens_decoded": [tokenizer.decode([t]) for t in sequence],
            }
        )
        new = sequence[n_prompt:].tolist()
        answers[question.question_id] = cut_answer(new, tokenizer, eos, DEFAULT_STOP_STRINGS).text
    with (out / "seed_batch_0000.pkl").open("wb") as handle:
        pickle.dump(batch, handle)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    final_shapes = {
        "hidden_state": list(batch[0]["hidden_states"][0].shape),
        "attention": list(batch[0]["attentions"][0].shape),
    }
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "answers": answers,
        "final_step_shapes": final_shapes,
    }


def run_ours(model_name: str, num_samples: int, out: Path, batch_size: int, dtype: str) -> dict:
    from extraction.cli import main
    from extraction.export import export_pickle
    from extraction.store import TraceStore

    store_dir = out / f"store_{batch_size}"
    start, cpu_start = time.perf_counter(), cpu_seconds()
    status = main(
        ["--model", model_name, "--dataset", "triviaqa", "--dataset-file", str(TRIVIAQA),
         "--num-samples", str(num_samples), "--output-dir", str(store_dir),
         "--batch-size", str(batch_size), "--dtype", dtype]
    )  # fmt: skip
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    assert status == 0
    store = TraceStore(store_dir)
    shard_bytes = sum(p.stat().st_size for p in store.shard_files)
    pickles = export_pickle(store_dir, out / f"pickle_{batch_size}", batch_size=num_samples)
    pickle_bytes = sum(p.stat().st_size for p in pickles)
    answers = {qid: store.rows[qid].generated_answer_clean for qid in store.question_ids}
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "answers": answers,
        "bytes_per_trace": shard_bytes / len(store),
        "seed_format_bytes_per_trace": pickle_bytes / len(store),
        "mean_seq_len": sum(store.rows[qid].seq_len for qid in store.question_ids) / len(store),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135M", help="registry id (both sides)")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument(
        "--dtype", default="float16", help="ours: storage dtype (Gemma-3 needs bfloat16)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8], help="ours, each")
    parser.add_argument("--mode", help="(internal) run one side: seed or ours-BATCH")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.mode:
        out = Path(args.out)
        if args.mode == "seed":
            result = run_seed(args.model, args.num_samples, out)
        else:
            batch_size = int(args.mode.removeprefix("ours-"))
            result = run_ours(args.model, args.num_samples, out, batch_size, args.dtype)
        result["peak_rss_mib"] = peak_rss_mib()
        (out / f"{args.mode}.json").write_text(json.dumps(result))
        return
    modes = ["seed", *(f"ours-{size}" for size in args.batch_sizes)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for mode in modes:
            cmd = [sys.executable, __file__, "--mode", mode, "--out", tmp, "--model", args.model,
                   "--dtype", args.dtype]  # fmt: skip
            subprocess.run([*cmd, "--num-samples", str(args.num_samples)], check=True, cwd=REPO)
            results[mode] = json.loads((Path(tmp) / f"{mode}.json").read_text())
    seed = results["seed"]
    n = args.num_samples
    print(f"\nload average before / after: {load_before} / {os.getloadavg()}")
    print(f"\n{n} TriviaQA questions, {args.model}, beam 5, max 64 new tokens")
    for mode in modes[1:]:
        ours = results[mode]
        same = sum(seed["answers"][q] == ours["answers"].get(q) for q in seed["answers"])
        rows = [
            ("questions / s", n / seed["seconds"], n / ours["seconds"]),
            ("questions / CPU-second", n / seed["cpu_seconds"], n / ours["cpu_seconds"]),
            ("peak RSS (MiB)", seed["peak_rss_mib"], ours["peak_rss_mib"]),
            ("bytes / trace (MiB), full final state", ours["seed_format_bytes_per_trace"] / 2**20,
             ours["bytes_per_trace"] / 2**20),
        ]  # fmt: skip
        print(f"\n{'batch size ' + mode.removeprefix('ours-'):40} {'seed':>10} {'ours':>10} "
              f"{'ours/seed':>10}")  # fmt: skip
        for name, a, b in rows:
            print(f"{name:40} {a:10.3f} {b:10.3f} {b / a:10.3f}")
        print(f"identical answers: {same}/{n}")
    print(f"mean sequence length (prompt + answer): {ours['mean_seq_len']:.1f} tokens")
    print(f"seed's actual final-step shapes: {seed['final_step_shapes']} (KV cache: one token)")


if __name__ == "__main__":
    main()
