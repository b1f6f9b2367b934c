"""``python -m graphs COMMAND``: build a graph dataset, summarise one, draw one graph, compare
the graphs of hallucinated and correct answers. The dialect of every stage (:mod:`common.dialect`):
every option is a flag and a YAML key (``--config``, ``--print_config``), ``-`` or ``_``, bare
booleans, lists as ``[a,b]`` or one item after another; ``--help`` comes from the signatures
below.

python -m graphs build --config configs/graphs/default.yaml [--graph.threshold 0.05 ...]
python -m graphs inspect ROOT
python -m graphs verify ROOT      # every cached graph file against its sha256 (exit 2)
python -m graphs draw --traces DIR --question_id Q --graph.block B --out graph.png
python -m graphs compare --config configs/graphs/compare.yaml [--graph.blocks [0,5,10]]
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from common import (
    Command,
    UserError,
    call_with_arguments,
    parse_config,
    read_json,
    run_commands,
    to_yaml,
)
from graphs.config import GraphBuildConfig, GraphCompareConfig
from graphs.spec import GraphSpec, new_names

PROG = "python -m graphs"


def build(cfg: GraphBuildConfig) -> None:
    from graphs.dataset import HallucinationGraphDataset

    dataset = HallucinationGraphDataset(
        cfg.root,
        cfg.traces,
        cfg.graph,
        labels=cfg.labels,
        split_seed=cfg.split_seed,
        split_ratios=cfg.split_ratios,
        force_reload=cfg.force_reload,
    )
    print(describe(Path(dataset.processed_dir)))
    print(describe_splits(Path(dataset.root)))


def describe(processed_dir: Path) -> str:
    """Counts, label balance and per-block size of one built dataset."""
    record = read_json(processed_dir / "graphs.json")
    graphs = record["graphs"]
    positive = sum(entry["label"] for entry in graphs)
    # Records written before the graph spec (issue 8) kept the options in four keys.
    spec = record.get("graph") or {
        **record["options"],
        "combine": record.get("combine", "stack"),
        "topology": record["topology"],
    }
    spec = new_names(spec)  # a record from before issue 22 says layer(s)
    blocks = record["blocks"] if "blocks" in record else record["layers"]
    shape = ("block", "blocks", "combine", "hidden_block")
    options = " ".join(f"{key}={value}" for key, value in spec.items() if key not in shape)
    skipped = record["skipped"]
    lines = [
        f"{processed_dir}",
        f"  traces {record['traces']}",
        f"  blocks {blocks}  {options}",
        f"  labels {record.get('labels', 'index')}",
        f"  {len(graphs)} graphs: {positive} hallucinated "
        f"({positive / max(len(graphs), 1):.1%}), {len(graphs) - positive} correct",
        f"  skipped: {skipped.get('unlabelled', 0)} unlabelled, {skipped.get('empty', 0)} "
        f"without answer tokens, {skipped.get('filtered', 0)} by pre_filter",
        f"  {'block':>6} {'nodes/graph':>12} {'edges/graph':>12} {'mean degree':>12}",
    ]
    scopes = blocks
    if spec["combine"] == "union":
        scopes = [f"union of {len(scopes)}"]
    for position, scope in enumerate(scopes):
        nodes = [entry["num_nodes"][position] for entry in graphs]
        edges = [entry["num_edges"][position] for entry in graphs]
        degree = [e / n for n, e in zip(nodes, edges, strict=True)]
        lines.append(
            f"  {scope:>6} {fmean(nodes or [0]):>12.1f} {fmean(edges or [0]):>12.1f} "
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


def inspect(root: str) -> None:
    """Summarise the graph datasets built under a root: counts, labels, sizes, splits.

    Args:
        root: The dataset root given to ``build``.
    """
    built = sorted(Path(root).glob("processed/*/graphs.json"))
    if not built:
        raise UserError(f"{root} holds no built graphs; run `{PROG} build --root {root}` first")
    for record in built:
        print(describe(record.parent))
    print(describe_splits(Path(root)))


def verify(root: str) -> None:
    """Check every graph file of the datasets built under a root against its recorded sha256,
    and ``splits.json``; exit 2 naming each finding.

    Args:
        root: The dataset root given to ``build``.
    """
    from graphs.cache import verify_caches
    from graphs.splits import splits_problems

    if not any(Path(root).glob("processed/*/graphs.json")):
        raise UserError(f"{root} holds no built graphs; run `{PROG} build --root {root}` first")
    problems = verify_caches(root) + splits_problems(root)
    for problem in problems:
        print(f"damaged: {problem}")
    if problems:
        raise UserError(
            f"{len(problems)} findings under {root} (listed above); rebuild with `{PROG} build "
            "--force_reload true` (and delete splits.json if it is listed)"
        )
    print(f"ok: every graph file under {root} matches its sha256")


def draw(traces: str, question_id: str, out: str, graph: GraphSpec) -> None:
    """Save a PNG of one block's graph of one trace (an arc diagram in token order).

    Args:
        traces: Trace store directory.
        question_id: The trace to draw.
        out: PNG file to write.
        graph: The graph: ``block`` is the block, the other options the edge rule.
    """
    from graphs.draw import draw_graph

    print(f"saved {draw_graph(traces, question_id, graph, out)}")


def compare(cfg: GraphCompareConfig) -> None:
    from graphs.compare import run_compare

    print(f"saved {run_compare(cfg)} (compare.json, graph_statistics.csv and the PNGs beside it)")


def _command(name: str, target, run=None) -> Command:
    """``python -m graphs NAME``: one option per field of a config dataclass (then ``run`` of the
    config) or per parameter of a function, in the one dialect (:mod:`common.dialect`)."""
    prog = f"{PROG} {name}"
    if run is None:
        positional = name in ("inspect", "verify")  # their one argument is the root
        return lambda argv: call_with_arguments(target, argv, prog, positional=positional)

    def command(argv: list[str]) -> None:
        cfg, print_config = parse_config(target, argv, prog)
        if print_config:
            print(to_yaml(cfg), end="")
        else:
            run(cfg)

    return command


COMMANDS: dict[str, Command] = {
    "build": _command("build", GraphBuildConfig, build),
    "inspect": _command("inspect", inspect),
    "verify": _command("verify", verify),
    "draw": _command("draw", draw),
    "compare": _command("compare", GraphCompareConfig, compare),
}


def main(argv: list[str] | None = None) -> int:
    return run_commands("graphs", COMMANDS, argv, default=None)
