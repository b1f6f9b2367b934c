"""A graph detector's variants chosen per split seed on validation AUROC, from a benchmark run.

python -m benchmarks.select_on_validation OUTPUT --prefix mpnn --against probe_lr_mean

``OUTPUT`` is a ``python -m training benchmark`` output folder whose config ran several variants
of one detector (``configs/benchmark/charm_ablations.yaml``: ``mpnn``, ``mpnn_hidden``, ...).
Prints every variant's test AUROC and its per-seed paired difference to a reference detector on
the same test questions, then the variant kept for each seed by the best validation AUROC (its
early-stopping score, never the test set): the number a researcher tuning the variants honestly
would report.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import NoReturn


def fail(message: str) -> NoReturn:
    """One ``error:`` line and exit status 2, as the project's commands do."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def seed_results(output: Path, name: str) -> dict[int, dict]:
    if not (output / "cache" / name).is_dir():
        fail(f"{output / 'cache' / name} not found: no results of {name}")
    return {
        (result := json.loads(path.read_text()))["seed"]: result
        for path in sorted((output / "cache" / name).glob("seed*.json"))
    }


def select(output: Path, prefix: str) -> dict[int, tuple[str, dict]]:
    """Per seed: (variant, result) with the highest ``best_val_auroc`` among ``prefix*``."""
    variants = {p.name: seed_results(output, p.name) for p in (output / "cache").glob(f"{prefix}*")}
    if not variants:
        fail(f"no results of {prefix}* under {output / 'cache'}")
    seeds = set.intersection(*(set(results) for results in variants.values()))
    return {
        seed: max(
            ((name, results[seed]) for name, results in variants.items()),
            key=lambda item: item[1]["settings"]["best_val_auroc"],
        )
        for seed in sorted(seeds)
    }


def paired(results: dict[int, dict], reference: dict[int, dict], name: str) -> list[float]:
    """Per seed: test AUROC minus the reference's, on the same test questions."""
    for seed, result in results.items():
        if seed not in reference:
            fail(f"seed {seed}: {name} has a result, the reference has none")
        if result["test_question_ids"] != reference[seed]["test_question_ids"]:
            fail(f"seed {seed}: {name} and the reference differ in test set")
    return [results[seed]["auroc"] - reference[seed]["auroc"] for seed in sorted(results)]


def mean_sd(values: list[float], sign: str = "") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{sign}.3f} ± {sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="benchmark output folder")
    parser.add_argument("--prefix", default="mpnn", help="the variants' common name prefix")
    parser.add_argument("--against", default="probe_lr_mean", help="reference detector")
    args = parser.parse_args()
    reference = seed_results(args.output, args.against)
    print(f"| variant | test AUROC | Δ vs {args.against} (paired) | seeds above | val AUROC |")
    print("|---|---|---|---|---|")
    for path in sorted((args.output / "cache").glob(f"{args.prefix}*")):
        results = seed_results(args.output, path.name)
        differences = paired(results, reference, path.name)
        vals = [result["settings"]["best_val_auroc"] for result in results.values()]
        print(
            f"| {path.name} | {mean_sd([r['auroc'] for r in results.values()])} "
            f"| {mean_sd(differences, '+')} | {sum(d > 0 for d in differences)}/{len(differences)} "
            f"| {statistics.fmean(vals):.3f} |"
        )
    chosen = select(args.output, args.prefix)
    differences = paired({seed: result for seed, (_, result) in chosen.items()}, reference, "")
    print(f"\n| seed | chosen on validation | val AUROC | test AUROC | Δ vs {args.against} |")
    print("|---|---|---|---|---|")
    for (seed, (name, result)), difference in zip(chosen.items(), differences, strict=True):
        val = result["settings"]["best_val_auroc"]
        print(f"| {seed} | {name} | {val:.3f} | {result['auroc']:.3f} | {difference:+.3f} |")
    selected = [result["auroc"] for _, result in chosen.values()]
    print(
        f"\nselected {args.prefix}: {mean_sd(selected)}; Δ vs {args.against}: "
        f"{mean_sd(differences, '+')} ({sum(d > 0 for d in differences)}/{len(differences)} "
        "seeds above)"
    )


if __name__ == "__main__":
    main()
