"""Test AUROC over seeds for graph detectors and the linear probe on one store, same splits.

python -m benchmarks.detector_seeds --traces /work/stores/smollm2_truthfulqa \
    --work /work/graphs_runs/truthfulqa --seeds 0 1 2 3 4 --detectors mpnn gcn gat probe
python -m benchmarks.detector_seeds --work /work/graphs_runs/truthfulqa --table

Seed ``s`` is both the split seed (``data.split_seed``: every detector of seed ``s`` sees the same
train/val/test questions) and the training seed. Each detector is ``python -m training fit`` then
``test`` of its config (``configs/training/{gcn,gat,charm}.yaml``; ``mpnn_*`` are ablations of
``charm.yaml``), run in this process with bounded epochs and early stopping on val AUROC. The
probe and the trace-only baselines are ``training.baselines`` on the GCN config's data (block 15).
Every finished run appends one line to ``WORK/results.jsonl``; a rerun skips what is there.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "training"
MPNN = ["--config", str(CONFIGS / "charm.yaml")]
# name -> training CLI arguments (after the store, root and seed).
DETECTORS: dict[str, list[str]] = {
    "gcn": ["--config", str(CONFIGS / "gcn.yaml")],
    "gat": ["--config", str(CONFIGS / "gat.yaml")],
    "mpnn": MPNN,
    "mpnn_both": [*MPNN, "--data.node_features", "both"],
    "mpnn_hidden": [*MPNN, "--data.node_features", "hidden"],
    "mpnn_prompt_edges": [*MPNN, "--data.prompt_edges", "true"],
    "mpnn_threshold0.1": [*MPNN, "--data.threshold", "0.1"],
    "mpnn_layers10-20": [*MPNN, "--data.layers", str(list(range(10, 21)))],
    "mpnn_width128": [*MPNN, "--model.init_args.hidden_channels", "128"],
    "mpnn_1layer": [*MPNN, "--model.init_args.num_layers", "1"],
    "mpnn_sum": [*MPNN, "--model.init_args.aggr", "sum"],
    "mpnn_edge_norm": [*MPNN, "--model.init_args.edge_norm", "true"],
    "mpnn_lr3e-3": [*MPNN, "--model.init_args.lr", "0.003"],
}
BASELINES = "probe"  # the linear probe on block 15 plus the trace-only baselines


def train_and_test(
    traces: str, work: Path, name: str, seed: int, epochs: int, patience: int
) -> dict:
    from training.cli import HallugraphCLI

    run_dir = work / "runs" / name / f"seed{seed}"
    args = [
        *DETECTORS[name], "--data.traces", traces, "--data.root", str(work / "graphs"),
        "--data.split_seed", str(seed), "--seed_everything", str(seed),
        "--trainer.default_root_dir", str(run_dir), "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger", "false", "--early_stopping.patience", str(patience),
    ]  # fmt: skip
    cli = HallugraphCLI(args=args, run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    metrics = cli.model.test_results["metrics"]
    return {
        "auroc": metrics["auroc"],
        "epochs": cli.trainer.current_epoch,
        "seconds": round(time.perf_counter() - start, 1),
        "n_test": metrics["n"],
    }


def baselines(traces: str, work: Path, seed: int) -> dict[str, dict]:
    from training.baselines import run_baselines
    from training.cli import HallugraphCLI

    args = [
        *DETECTORS["gcn"], "--data.traces", traces, "--data.root", str(work / "graphs"),
        "--data.split_seed", str(seed), "--seed_everything", str(seed),
    ]  # fmt: skip
    cli = HallugraphCLI(args=args, run=False)
    cli.datamodule.prepare_data()
    cli.datamodule.setup("test")
    results = run_baselines(cli.datamodule, cli.model.hparams.threshold_rule)
    return {
        name: {"auroc": result["metrics"]["auroc"], "n_test": result["metrics"]["n"]}
        for name, result in results.items()
    }


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def table(rows: list[dict]) -> str:
    """Markdown: detector, mean ± sd of test AUROC, each seed's, mean epochs."""
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        by_name.setdefault(row["detector"], []).append(row)
    lines = [
        "| detector | test AUROC (mean ± sd) | per seed (seed: AUROC) | epochs (mean) |",
        "|---|---|---|---|",
    ]
    for name, runs in by_name.items():
        aurocs = [run["auroc"] for run in runs]
        sd = f" ± {statistics.stdev(aurocs):.3f}" if len(aurocs) > 1 else ""
        seeds = ", ".join(f"{run['seed']}: {run['auroc']:.3f}" for run in runs)
        epochs = [run["epochs"] for run in runs if "epochs" in run]
        shown = f"{statistics.fmean(epochs):.0f}" if epochs else "—"
        lines.append(f"| {name} | {statistics.fmean(aurocs):.3f}{sd} | {seeds} | {shown} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", help="trace store")
    parser.add_argument("--work", type=Path, required=True, help="graphs, runs and results.jsonl")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--detectors", nargs="+", default=["mpnn", "gcn", "gat", BASELINES])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=6, help="early stopping, in epochs")
    parser.add_argument("--table", action="store_true", help="print the results table and exit")
    args = parser.parse_args()
    results = args.work / "results.jsonl"
    if args.table:
        print(table(read_results(results)))
        return
    unknown = set(args.detectors) - {*DETECTORS, BASELINES}
    if unknown or not args.traces:
        parser.error(f"need --traces; detectors are {', '.join([*DETECTORS, BASELINES])}")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # the machine's cores are shared (see training/__main__.py)
    args.work.mkdir(parents=True, exist_ok=True)
    done = {(row["detector"], row["seed"]) for row in read_results(results)}
    for seed in args.seeds:
        for name in args.detectors:
            if (name, seed) in done or (name == BASELINES and ("probe_layer15", seed) in done):
                continue
            if name == BASELINES:
                rows = [
                    {"detector": detector, "seed": seed, **result}
                    for detector, result in baselines(args.traces, args.work, seed).items()
                ]
            else:
                result = train_and_test(
                    args.traces, args.work, name, seed, args.max_epochs, args.patience
                )
                rows = [{"detector": name, "seed": seed, **result}]
            with results.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row) + "\n" for row in rows)
            for row in rows:
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
