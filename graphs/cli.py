"""``python -m graphs COMMAND``: build a graph dataset, summarise one, draw one graph, compare
the graphs of hallucinated and correct answers.

python -m graphs build --config configs/graphs/default.yaml [--threshold 0.05 ...]
python -m graphs inspect ROOT
python -m graphs draw --traces DIR --question-id Q --layer L --out graph.png
python -m graphs compare --traces DIR --layers 0 5 10 --output DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

from extraction import UserError, read_json, run_commands

PROG = "python -m graphs"


def _build(argv: list[str]) -> None:
    from extraction import parse_config, to_yaml
    from graphs.config import GraphBuildConfig

    cfg, print_config = parse_config(GraphBuildConfig, argv, f"{PROG} build")
    flags = {arg.split("=", 1)[0] for arg in argv}
    if "--layers" in flags and "--layer" not in flags:
        cfg.layer = None
    elif "--layer" in flags and "--layers" not in flags:
        cfg.layers = None
    if print_config:
        print(to_yaml(cfg), end="")
        return
    from graphs.dataset import HallucinationGraphDataset

    dataset = HallucinationGraphDataset(
        cfg.root,
        cfg.traces,
        layer=cfg.layer,
        layers=cfg.layers,
        combine=cfg.combine,
        hidden_layer=cfg.hidden_layer,
        topology=cfg.topology,
        labels=cfg.labels,
        split_seed=cfg.split_seed,
        split_ratios=cfg.split_ratios,
        force_reload=cfg.force_reload,
        **cfg.graph_options(),
    )
    print(describe(Path(dataset.processed_dir)))
    print(describe_splits(Path(dataset.root)))


def describe(processed_dir: Path) -> str:
    """Counts, label balance and per-layer size of one built dataset."""
    record = read_json(processed_dir / "graphs.json")
    graphs = record["graphs"]
    positive = sum(entry["label"] for entry in graphs)
    options = " ".join(f"{key}={value}" for key, value in record["options"].items())
    skipped = record["skipped"]
    lines = [
        f"{processed_dir}",
        f"  traces {record['traces']}",
        f"  layers {record['layers']}  {options}  topology={record['topology']}",
        f"  labels {record.get('labels', 'index')}",
        f"  {len(graphs)} graphs: {positive} hallucinated "
        f"({positive / max(len(graphs), 1):.1%}), {len(graphs) - positive} correct",
        f"  skipped: {skipped.get('unlabelled', 0)} unlabelled, {skipped.get('empty', 0)} "
        f"without answer tokens, {skipped.get('filtered', 0)} by pre_filter",
        f"  {'layer':>6} {'nodes/graph':>12} {'edges/graph':>12} {'mean degree':>12}",
    ]
    scopes = record["layers"]
    if record.get("combine") == "union":
        scopes = [f"union of {len(scopes)}"]
    for position, layer in enumerate(scopes):
        nodes = [entry["num_nodes"][position] for entry in graphs]
        edges = [entry["num_edges"][position] for entry in graphs]
        degree = [e / n for n, e in zip(nodes, edges, strict=True)]
        lines.append(
            f"  {layer:>6} {fmean(nodes or [0]):>12.1f} {fmean(edges or [0]):>12.1f} "
            f"{fmean(degree or [0]):>12.2f}"
        )
    return "\n".join(lines)


def describe_splits(root: Path) -> str:
    from graphs.splits import SPLITS_FILE

    path = root / SPLITS_FILE
    if not path.exists():
        return f"{path}: no splits yet"
    lines = [f"{path}"]
    for key, splits in read_json(path).items():
        sizes = ", ".join(f"{name} {len(ids)}" for name, ids in splits.items())
        lines.append(f"  {key}: {sizes}")
    return "\n".join(lines)


def _inspect(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} inspect", description="Summarise the graph datasets built under ROOT."
    )
    parser.add_argument("root", help="the dataset root given to `build`")
    args = parser.parse_args(argv)
    root = Path(args.root)
    built = sorted(root.glob("processed/*/graphs.json"))
    if not built:
        raise UserError(f"{root} holds no built graphs; run `{PROG} build --root {root}` first")
    for record in built:
        print(describe(record.parent))
    print(describe_splits(root))


def _draw(argv: list[str]) -> None:
    from graphs.build import HEAD_MODES, NODE_MODES

    parser = argparse.ArgumentParser(
        prog=f"{PROG} draw", description="Save a PNG of one layer's graph of one trace."
    )
    parser.add_argument("--traces", required=True, help="trace store directory")
    parser.add_argument("--question-id", required=True, help="the trace to draw")
    parser.add_argument("--layer", type=int, required=True, help="block index")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--threshold", type=float, default=0.01, help="smallest edge weight")
    parser.add_argument("--top-k", type=int, help="most incoming edges per token")
    parser.add_argument("--head-mode", choices=HEAD_MODES, default="mean")
    parser.add_argument("--nodes", choices=NODE_MODES, default="all")
    args = parser.parse_args(argv)
    from graphs.draw import draw_graph

    out = draw_graph(
        args.traces,
        args.question_id,
        args.layer,
        args.out,
        threshold=args.threshold,
        top_k=args.top_k,
        head_mode=args.head_mode,
        nodes=args.nodes,
    )
    print(f"saved {out}")


def _compare(argv: list[str]) -> None:
    from extraction import parse_config, to_yaml
    from graphs.config import GraphCompareConfig

    cfg, print_config = parse_config(GraphCompareConfig, argv, f"{PROG} compare")
    if print_config:
        print(to_yaml(cfg), end="")
        return
    from graphs.compare import run_compare

    print(f"saved {run_compare(cfg)} (compare.json, graph_statistics.csv and the PNGs beside it)")


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "build": _build,
    "inspect": _inspect,
    "draw": _draw,
    "compare": _compare,
}


def main(argv: list[str] | None = None) -> int:
    return run_commands("graphs", COMMANDS, argv, default=None)
