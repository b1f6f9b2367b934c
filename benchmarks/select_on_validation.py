"""A graph detector's variants chosen per split seed on validation AUROC, from a benchmark run.

python -m benchmarks.select_on_validation OUTPUT --prefix mpnn --against probe_lr_mean

``OUTPUT`` is a ``python -m training benchmark`` output folder whose config ran several variants
of one detector (``configs/benchmark/charm_ablations.yaml``: ``mpnn``, ``mpnn_hidden``, ...).
For each seed the variant with the best validation AUROC (its early-stopping score, never the
test set) is kept, and its test AUROC is compared with a reference detector on the same test
questions: this is the number a researcher tuning the variants honestly would report.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def seed_results(output: Path, name: str) -> dict[int, dict]:
    return {
        (result := json.loads(path.read_text()))["seed"]: result
        for path in sorted((output / "cache" / name).glob("seed*.json"))
    }


def select(output: Path, prefix: str) -> dict[int, tuple[str, dict]]:
    """Per seed: (variant, result) with the highest ``best_val_auroc`` among ``prefix*``."""
    variants = {p.name: seed_results(output, p.name) for p in (output / "cache").glob(f"{prefix}*")}
    seeds = set.intersection(*(set(results) for results in variants.values()))
    return {
        seed: max(
            ((name, results[seed]) for name, results in variants.items()),
            key=lambda item: item[1]["settings"]["best_val_auroc"],
        )
        for seed in sorted(seeds)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="benchmark output folder")
    parser.add_argument("--prefix", default="mpnn", help="the variants' common name prefix")
    parser.add_argument("--against", default="probe_lr_mean", help="reference detector")
    args = parser.parse_args()
    chosen = select(args.output, args.prefix)
    reference = seed_results(args.output, args.against)
    rows, selected, differences = [], [], []
    for seed, (name, result) in chosen.items():
        if result["test_question_ids"] != reference[seed]["test_question_ids"]:
            raise SystemExit(f"error: seed {seed}: {name} and {args.against} differ in test set")
        difference = result["auroc"] - reference[seed]["auroc"]
        selected.append(result["auroc"])
        differences.append(difference)
        val = result["settings"]["best_val_auroc"]
        rows.append(f"| {seed} | {name} | {val:.3f} | {result['auroc']:.3f} | {difference:+.3f} |")
    print(f"| seed | chosen on validation | val AUROC | test AUROC | Δ vs {args.against} |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nselected {args.prefix}: {statistics.fmean(selected):.3f} ± "
        f"{statistics.stdev(selected):.3f}; Δ vs {args.against}: "
        f"{statistics.fmean(differences):+.3f} ± {statistics.stdev(differences):.3f} "
        f"({sum(d > 0 for d in differences)}/{len(differences)} seeds above)"
    )


if __name__ == "__main__":
    main()
