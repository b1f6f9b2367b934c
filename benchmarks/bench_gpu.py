"""SmolLM2-135M on a CUDA GPU: 4-bit NF4 loading through bitsandbytes against float16, batched
generation at batch 1/8/32, the final-state pass, and a whole extraction (seconds a question,
bytes a trace), with the GPU memory of each step.

    python benchmarks/bench_gpu.py --questions 64 --batch-sizes 1 8 32 --json gpu.json

One prepared run of a few minutes (the model is 135M parameters). Without CUDA it measures
nothing, says so and exits with status 1: the numbers in docs/BENCHMARKS.md ("On a GPU") come
only from a real run of this script. Questions: the first ``--questions`` of the shared TriviaQA
subset when it is there (``../shared/data``), else the bundled demo questions; seed decoding
(beam 5, 64 new tokens, the default stop strings).
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extraction.config import ExtractionConfig
from extraction.estimate import BatchSettings, LengthProfile, StoreLayout, peak_memory, weight_bytes
from extraction.final_state import final_state_pass
from extraction.generation import DEFAULT_STOP_STRINGS, Decoding, generate_answers
from extraction.model_shapes import model_shape
from extraction.models import OFFLINE_MODEL, load_model, resolve_source
from extraction.prompts import SEED_PROMPT, build_prompt, encode_prompt
from extraction.questions import load_questions
from extraction.run import run_extraction
from extraction.store import TraceStore

TRIVIAQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "triviaqa" / "validation.jsonl"
QUANTIZATIONS = ("4bit", "none")  # NF4 (fp16 compute) against plain float16 weights


def gib(size: float) -> float:
    return round(size / 2**30, 3)


def timed(step):
    """``(result, seconds, peak GPU bytes)`` of ``step()``, synchronised."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = step()
    torch.cuda.synchronize()
    return result, time.perf_counter() - start, torch.cuda.max_memory_allocated()


def bench_model(quantization: str, prompts: list[list[int]], batch_sizes: list[int]) -> dict:
    (loaded, load_seconds, _) = timed(
        lambda: load_model(
            OFFLINE_MODEL, quantization=quantization, torch_dtype="float16", device="cuda"
        )
    )
    model, tokenizer = loaded.model, loaded.tokenizer
    weights = torch.cuda.memory_allocated()
    decoding = Decoding(num_beams=5, max_new_tokens=64, early_stopping=True)
    blocks = list(range(loaded.num_layers))
    result = {
        "quantization": loaded.quantization,
        "load_seconds": round(load_seconds, 2),
        "weights_gib": gib(weights),
        "batches": [],
    }
    answers_at_first_size = None
    for size in batch_sizes:
        batches = [prompts[k : k + size] for k in range(0, len(prompts), size)]
        generate_seconds = final_seconds = 0.0
        generate_peak = final_peak = 0
        answers = []
        for batch in batches:
            got, seconds, peak = timed(
                lambda batch=batch: generate_answers(
                    model, tokenizer, batch, decoding, DEFAULT_STOP_STRINGS
                )
            )
            generate_seconds += seconds
            generate_peak = max(generate_peak, peak)
            answers += got
            sequences = [ids + a.answer_ids for ids, a in zip(batch, got, strict=True)]
            _, seconds, peak = timed(
                lambda batch=batch, sequences=sequences: final_state_pass(
                    model, sequences, [len(p) for p in batch], tokenizer.pad_token_id, blocks
                )
            )
            final_seconds += seconds
            final_peak = max(final_peak, peak)
        texts = [answer.text for answer in answers]
        answers_at_first_size = answers_at_first_size or texts
        result["batches"].append(
            {
                "batch_size": size,
                "generate_s_per_question": round(generate_seconds / len(prompts), 4),
                "final_pass_s_per_question": round(final_seconds / len(prompts), 4),
                "generate_peak_gib": gib(generate_peak),
                "final_pass_peak_gib": gib(final_peak),
                "mean_answer_tokens": round(
                    sum(len(a.answer_ids) for a in answers) / len(answers), 1
                ),
                "same_answers_as_first_batch_size": sum(
                    a == b for a, b in zip(texts, answers_at_first_size, strict=True)
                ),
            }
        )
    result["answers"] = answers_at_first_size
    return result


def bench_extraction(questions: int, batch_size: int, dataset_file: str | None) -> dict:
    """A whole run (``python -m extraction`` in-process) with 4-bit weights into a temp store."""
    with tempfile.TemporaryDirectory() as folder:
        cfg = ExtractionConfig(
            dataset="triviaqa" if dataset_file else None,
            dataset_file=dataset_file,
            num_samples=questions,
            batch_size=batch_size,
            quantization="4bit",
            device="cuda",
            output_dir=str(Path(folder) / "store"),
        )
        torch.cuda.reset_peak_memory_stats()
        result = run_extraction(cfg)
        store = TraceStore(result.store_dir)
        on_disk = sum(path.stat().st_size for path in store.shard_files)
        seq_lens = [store.rows[qid].seq_len for qid in store.question_ids]
        estimated = estimated_peak(store, batch_size)
        return {
            "batch_size": batch_size,
            "traces": len(store),
            "errors": result.errors,
            "s_per_question": round(result.extract_seconds / max(1, result.processed), 4),
            "bytes_per_trace": round(on_disk / max(1, len(store))),
            "mean_seq_len": round(sum(seq_lens) / max(1, len(seq_lens)), 1),
            "peak_gib": gib(torch.cuda.max_memory_allocated()),
            "estimated_peak_gib": gib(estimated),
        }


def estimated_peak(store: TraceStore, batch_size: int) -> float:
    """What ``python -m extraction estimate`` predicts for this run's lengths and settings, to
    set against the measured peak."""
    shape = model_shape(OFFLINE_MODEL)
    rows = [store.rows[qid] for qid in store.question_ids]
    profile = LengthProfile(tuple((r.n_prompt_tokens, r.n_answer_tokens) for r in rows), "run")
    layout = StoreLayout(shape.num_layers, shape.num_heads, shape.hidden_size, dtype_bytes=2)
    weights = weight_bytes(shape, "4bit", compute_bytes=2)
    batch = BatchSettings(batch_size, num_beams=5, max_new_tokens=64, compute_bytes=2)
    return peak_memory(shape, weights, batch, profile, layout, cuda=True)["peak"]


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit(
            "bench_gpu.py: no CUDA GPU on this machine (torch.cuda.is_available() is False), so "
            "nothing was measured; run it on a machine with an NVIDIA GPU and bitsandbytes"
        )
    dataset_file = str(TRIVIAQA) if TRIVIAQA.exists() else None
    questions = load_questions("triviaqa" if dataset_file else "demo", dataset_file, args.questions)
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(OFFLINE_MODEL))
    prompts = [
        encode_prompt(build_prompt(q.question, tokenizer, SEED_PROMPT), tokenizer, False)
        for q in questions
    ]
    results = {
        "device": torch.cuda.get_device_name(),
        "packages": {name: _version(name) for name in ("torch", "transformers", "bitsandbytes")},
        "questions": len(prompts),
        "source": dataset_file or "bundled demo questions",
        "models": [],
    }
    for quantization in QUANTIZATIONS:
        results["models"].append(bench_model(quantization, prompts, args.batch_sizes))
        torch.cuda.empty_cache()
    results["extraction"] = bench_extraction(len(prompts), 8, dataset_file)
    nf4, fp16 = results["models"]
    results["nf4_answers_equal_fp16"] = sum(
        a == b for a, b in zip(nf4.pop("answers"), fp16.pop("answers"), strict=True)
    )
    print(f"{results['device']}, {results['questions']} questions ({results['source']})")
    print("| weights | batch | generate s/q | final pass s/q | peak GiB (gen / final) |")
    print("|---|---|---|---|---|")
    for model in results["models"]:
        for row in model["batches"]:
            print(
                f"| {model['quantization']} ({model['weights_gib']} GiB, loaded in "
                f"{model['load_seconds']} s) | {row['batch_size']} | "
                f"{row['generate_s_per_question']} | {row['final_pass_s_per_question']} | "
                f"{row['generate_peak_gib']} / {row['final_pass_peak_gib']} |"
            )
    print(f"NF4 answers equal to fp16's: {results['nf4_answers_equal_fp16']} of {len(prompts)}")
    print(f"whole extraction (NF4, batch 8): {json.dumps(results['extraction'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
