"""``python -m training benchmark --config configs/benchmark/demo.yaml [--data.* ...]``.

Every detector on the same store, labels and splits: for each split seed (the data module's
stratified split, ``--data.split_seed`` = seed) every detector is fitted with that seed and
scored on that seed's test questions. Trace-feature detectors read one cached feature file
(:mod:`training.detectors.features`); graph detectors are trained from their own training config
through the same data module, with the benchmark's data options (store, root, split, labels)
and their own graph shape (layer or layers, head mode, nodes, ...). Each (detector, seed) result
is saved under ``OUTPUT/cache`` as soon as it exists, so an interrupted run resumes.

With ``--train_sizes`` every detector is also trained on nested subsets of each seed's train
split (``learning_curve.*``); with ``--transfer_traces`` each full-train detector also scores
other stores of the same model (a transfer table and heatmap); options in
:mod:`training.benchmark_evidence`. Graphs are built once per store and graph spec and reused
by every seed and size (the graph cache does not depend on the split). ``--jobs N`` shares the
jobs among N processes (:mod:`training.benchmark_jobs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jsonargparse import ActionConfigFile, ArgumentParser
from tqdm import tqdm

from common import UserError, atomic_write_text, normalise, read_json, shown_path
from graphs import SPLITS, GraphSpec
from training import benchmark_evidence
from training.benchmark_curves import write_learning_curve
from training.benchmark_jobs import parse_worker, run_workers, share
from training.benchmark_report import write_outputs
from training.benchmark_stats import seed_metrics
from training.benchmark_transfer import (
    TransferStore,
    graph_transfer_scores,
    kept_checkpoint,
    load_features,
    trace_transfer_scores,
    transfer_graphs,
    unscored,
    with_transfer,
)
from training.data import HallucinationGraphDataModule, describe_generations
from training.detectors.features import load_or_compute
from training.detectors.fitting import Split
from training.detectors.registry import DETECTORS, Detector
from training.lightning_cli import PROG, HallugraphCLI

log = logging.getLogger(__name__)

# Data options a graph detector keeps from its own training config: its graph spec decides what
# its graphs are. Everything else (store, root, split, labels, loaders) comes from the benchmark.
OWN_OPTIONS = ("graph", "batch_size")


@dataclass
class GraphDetector:
    """A graph detector: its training config and training-CLI overrides of it (an ablation)."""

    name: str
    config: Path
    overrides: list[str]

    @classmethod
    def parse(cls, name: str, spec: str) -> GraphDetector:
        """``"configs/training/charm.yaml --data.graph.node_features hidden"``: config, then
        overrides."""
        words = shlex.split(spec)
        if not words:
            raise UserError(f"graph detector {name!r} names no training config")
        config, *overrides = words
        return cls(name, Path(config), overrides)

    family = "graph"

    @property
    def method(self) -> str:
        return " ".join(["trained from", str(self.config), *self.overrides])


def build_parser(prog: str) -> ArgumentParser:
    """Every option of ``benchmark``, in one place: ``--data.*`` as in ``fit``, the graph
    detectors' own training settings as ``--graph_*`` (``--graph.*`` is the graph spec in every
    other command). Read in the one dialect (:func:`common.normalise`)."""
    parser = ArgumentParser(
        prog=prog,
        description="Every detector side by side on one store: AUROC/AUPRC over split seeds, "
        "paired bootstrap against the best trace baseline. --data.* as in `fit`.",
        exit_on_error=False,
        allow_abbrev=False,
    )
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(HallucinationGraphDataModule, "data")
    parser.add_argument("--seeds", type=int, default=5, help="split seeds 0 .. seeds-1")
    parser.add_argument(
        "--detectors", type=list[str] | None, default=None, help="trace detectors (default: all)"
    )
    parser.add_argument(
        "--graph_detectors",
        type=dict[str, str],
        default={},
        help="graph detector name -> its training config (configs/training/*.yaml), optionally "
        "followed by training-CLI overrides of it: 'configs/training/charm.yaml "
        "--data.graph.threshold 0.1'",
    )
    parser.add_argument("--graph_max_epochs", type=int, default=30)
    parser.add_argument("--graph_patience", type=int, default=5, help="early stopping, epochs")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples")
    parser.add_argument("--laplacian_k", type=int, default=10, help="LapEigvals eigenvalues")
    benchmark_evidence.add_arguments(parser)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes fitting detectors side by side, one torch thread each (at most the "
        "cores); the results are the same as with one",
    )
    parser.add_argument(
        "--worker", type=str | None, default=None, help="I/N: one process of --jobs (set by it)"
    )
    parser.add_argument("--output", type=str, default="runs/benchmark")
    parser.add_argument(
        "--report_only",
        type=bool,
        default=False,
        help="write the outputs from the cached results only: a detector with a seed not yet "
        "computed is listed as unfinished (for a run stopped early)",
    )
    return parser


def _sha(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _datamodule(options: dict, seed: int) -> HallucinationGraphDataModule:
    datamodule = HallucinationGraphDataModule(**{**options, "split_seed": seed})
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def _split(datamodule: HallucinationGraphDataModule, features) -> tuple[Split, list[str]]:
    datasets = datamodule.datasets
    split = Split(
        rows={s: features.rows(datasets[s].question_ids) for s in SPLITS},
        labels={s: np.array(datasets[s].labels) for s in SPLITS},
    )
    return split, datasets["test"].question_ids


def _graph_run_dir(output: Path, detector: GraphDetector, seed: int) -> Path:
    return output / "graph" / detector.name / f"seed{seed}"


def _graph_cli(
    detector: GraphDetector, options: dict, seed: int, output: Path, graph: dict
) -> HallugraphCLI:
    """The training CLI of one (detector, seed), built but not run."""
    args = ["--config", str(detector.config)]
    for key, value in options.items():
        if key not in OWN_OPTIONS:
            args += [f"--data.{key}", value if isinstance(value, str) else json.dumps(value)]
    args += [*detector.overrides, "--data.split_seed", str(seed), "--seed_everything", str(seed)]
    args += ["--trainer.default_root_dir", str(_graph_run_dir(output, detector, seed))]
    args += ["--trainer.max_epochs", str(graph["max_epochs"])]
    args += ["--early_stopping.patience", str(graph["patience"])]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    return HallugraphCLI(args=args, run=False)


def _graph_scores(
    detector: GraphDetector, options: dict, seed: int, output: Path, graph: dict
) -> tuple[list[str], np.ndarray, dict, HallugraphCLI]:
    """Fit (early stopping on val AUROC), test the best checkpoint; test question ids, scores,
    settings (with the best checkpoint, relative to the run folder) and the fitted CLI."""
    cli = _graph_cli(detector, options, seed, output, graph)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    results = cli.model.test_results
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    settings = {
        "model": type(cli.model).__name__,
        "epochs": cli.trainer.current_epoch,
        "best_val_auroc": float(cli.trainer.checkpoint_callback.best_model_score),
        "graph": {**cli.datamodule.hparams.graph, "batch_size": cli.datamodule.hparams.batch_size},
        "checkpoint": best.resolve()
        .relative_to(_graph_run_dir(output, detector, seed).resolve())
        .as_posix(),
    }
    return cli.datamodule.datasets["test"].question_ids, results["probs"].numpy(), settings, cli


def _graph_skip_reason(detector: GraphDetector) -> str | None:
    if not detector.config.exists():
        return f"{shown_path(detector.config)} not found"
    import yaml

    class_path = yaml.safe_load(detector.config.read_text())["model"]["class_path"]
    module, _, name = class_path.rpartition(".")
    if not hasattr(__import__(module, fromlist=[name]), name):
        return f"{class_path} is not in this checkout"
    return None


def _detector_code_sha256() -> str:
    """A cached result is stale once the detectors' code changed."""
    package = Path(__file__).parent / "detectors"
    sources = sorted(package.glob("*.py"))
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def _cached(
    path: Path, key: str, identity: dict, transfer: list[TransferStore]
) -> tuple[dict | None, bool]:
    """The cached result of this job (or None), and whether it was found by its old key. A
    result cached before the transfer stores left the key (its key covered the stores it scored)
    is found when this run names those stores, and given the new key."""
    if not path.exists():
        return None, False
    result = read_json(path)
    if result.get("key") == key:
        return result, False
    scored = list(result.get("transfer") or {})
    named = {target.name: target for target in transfer}
    if "transfer_identity" in result or not scored or not set(scored) <= set(named):
        return None, False
    identities = {name: named[name].identity() for name in scored}
    if result.get("key") != _sha(identity | {"transfer": list(identities.values())}):
        return None, False
    return {**result, "key": key, "transfer_identity": identities}, True


def _prepare_graphs(
    detectors: list[GraphDetector],
    options: dict,
    output: Path,
    graph: dict,
    transfer: list[TransferStore],
) -> None:
    """Every graph cache the graph detectors read: their graphs of this store (the cache does
    not depend on the split) and of each transfer store."""
    for detector in detectors:
        cli = _graph_cli(detector, options, 0, output, graph)
        cli.datamodule.prepare_data()
        for target in transfer:
            transfer_graphs(cli.datamodule.spec, target, options["root"])


def run(cfg, argv: list[str]) -> Path | None:
    """The benchmark of ``cfg`` (``argv``: its command line, for ``--jobs``); the report's path,
    or None in a ``--worker`` process, which only fills the cache."""
    worker = parse_worker(cfg.jobs, cfg.worker)
    options = cfg.data.as_dict()
    options["graph"] = GraphSpec.from_dict(options["graph"]).as_dict()  # checked, plain values
    output = Path(cfg.output)
    graph = {"max_epochs": cfg.graph_max_epochs, "patience": cfg.graph_patience}
    trace_detectors = _select(cfg.detectors)
    graph_detectors = [GraphDetector.parse(n, spec) for n, spec in cfg.graph_detectors.items()]
    if cfg.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {cfg.seeds}")
    benchmark_evidence.apply_split_by(cfg, options)
    sizes = benchmark_evidence.train_sizes(cfg, options)
    transfer = benchmark_evidence.transfer_stores(cfg, options)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    datamodules = [_datamodule(options, seed) for seed in range(cfg.seeds)]
    timings["splits_and_graph_cache_s"] = time.perf_counter() - start
    store = datamodules[0].store
    features, timings["features_s"] = load_or_compute(
        store, Path(options["root"]) / "detector_features", cfg.laplacian_k
    )
    if transfer:
        timings["transfer_features_s"] = load_features(transfer, options["root"], cfg.laplacian_k)
    # Per train size (None: the whole train split), each seed's split; the graphs are the same.
    splits = {None: [_split(dm, features) for dm in datamodules]}
    for size in sizes:
        subset = {**options, "train_size": size}
        splits[size] = [_split(_datamodule(subset, s), features) for s in range(cfg.seeds)]

    approximate = sparse_caveats(store, trace_detectors)
    skipped = {
        d.name: features.sampling_skip
        for d in trace_detectors
        if d.needs_sampling and features.sampling_skip
    }
    skipped |= {d.name: r for d in graph_detectors if (r := _graph_skip_reason(d)) is not None}
    detectors = [d for d in trace_detectors + graph_detectors if d.name not in skipped]
    jobs = [(n, d, s) for n in splits for d in detectors for s in range(cfg.seeds)]
    base_key = {
        "store": store.manifest_sha256,
        # The graph spec under its key names from before issue 22: cached results stay found.
        "data": {**options, "graph": GraphSpec.from_dict(options["graph"]).cache_key()},
        "k": cfg.laplacian_k,
        "code": _detector_code_sha256(),
    }
    results: dict[int | None, dict[str, list[dict]]] = {size: {} for size in splits}
    missing: dict[int | None, dict[str, list[int]]] = {size: {} for size in splits}
    compute = not cfg.report_only
    if compute and cfg.jobs > 1 and worker is None:
        graph_jobs = [d for d in detectors if isinstance(d, GraphDetector)]
        _prepare_graphs(graph_jobs, options, output, graph, transfer)
        run_workers(argv, cfg.jobs, output)
        compute = False  # the report, from what the processes cached
    mine = share(jobs, worker)
    for size, detector, seed in (bar := tqdm(mine, desc="benchmark", unit="run")):
        bar.set_postfix_str(f"{detector.name} seed {seed}" + f" n={size}" * (size is not None))
        job = Job(
            detector, seed, splits[size][seed], features,
            {**options, "train_size": size} if size else options,
            output / "train_size" / str(size) if size else output,
            transfer=[] if size else transfer,
        )  # fmt: skip
        result = _run_one(job, graph, base_key, compute=compute)
        if result is None:
            missing[size].setdefault(detector.name, []).append(seed)
        else:
            results[size].setdefault(detector.name, []).append(result)
    if worker is not None:
        return None
    for name, seeds in missing[None].items():
        results[None].pop(name, None)
        skipped[name] = f"unfinished: seeds {seeds} of {cfg.seeds} not computed (run stopped)"
    if not results[None]:
        raise UserError(f"no finished results under {output / 'cache'}; run without --report_only")
    families = {d.name: d.family for d in trace_detectors + graph_detectors}
    context = {
        "config": _plain_config(cfg, options),
        "store": str(store.root.resolve()),
        "model": store.manifest.settings.model,
        "manifest_sha256": store.manifest_sha256,
        "label_methods": _label_methods(store, datamodules[0]),
        "n_traces": len(features.question_ids),
        "approximate": approximate,
        "generations": describe_generations(store),
        "split_by": options["split_by"],
        "transfer": {t.name: str(t.store.root.resolve()) for t in transfer},
        "timings_s": timings,
    }
    if sizes:
        # The whole train split ends the curve, at its number of questions (seed 0's).
        full = len({store.rows[q].unit for q in datamodules[0].datasets["train"].question_ids})
        points = {size: size for size in sizes} | ({} if full in sizes else {full: None})
        write_learning_curve(
            output,
            {n: results[size] for n, size in points.items()},
            {n: missing[size] for n, size in points.items()},
            families,
            context,
            full=full,
        )
    return write_outputs(
        output,
        results[None],
        skipped,
        families=families,
        methods={d.name: d.method for d in trace_detectors + graph_detectors},
        context=context,
        resamples=cfg.bootstrap,
    )


def sparse_caveats(store, detectors: list[Detector]) -> dict[str, str]:
    """``{detector: why}`` for the detectors that a sparse store makes approximate (they read
    attention weights below its min_attention as 0); empty for a dense store. Logged too."""
    if store.min_attention is None:
        return {}
    out = {d.name: d.sparse_caveat for d in detectors if d.sparse_caveat is not None}
    for name, caveat in out.items():
        log.warning("%s is approximate on a sparse store (min_attention %s): %s", name,
                    store.min_attention, caveat)  # fmt: skip
    return out


@dataclass
class Job:
    """One (detector, seed) at one train size: its split, options, output folder and the stores
    it also scores."""

    detector: Detector | GraphDetector
    seed: int
    split_and_qids: tuple[Split, list[str]]
    features: object
    options: dict
    output: Path
    transfer: list[TransferStore]


def _run_one(job: Job, graph: dict, base_key: dict, compute: bool = True) -> dict | None:
    """The job's result: from the cache, else computed and cached (None when it is not cached
    and ``compute`` is off). A transfer store the cached result has not scored is scored and
    added: a trace detector is fitted again (seconds, the same seed), a graph detector's kept
    best checkpoint scores it (no training); without that checkpoint the job runs again."""
    detector, seed = job.detector, job.seed
    is_graph = isinstance(detector, GraphDetector)
    identity = {**base_key, "data": job.options, "detector": detector.name, "seed": seed}
    if is_graph:
        identity |= {"config": detector.config.read_text(), "graph": graph}
        identity |= {"overrides": detector.overrides} if detector.overrides else {}
    else:
        identity |= {"method": detector.method}
    key = _sha(identity)
    path = job.output / "cache" / detector.name / f"seed{seed}.json"
    result, rekeyed = _cached(path, key, identity, job.transfer)
    if not compute:
        return result
    stale = unscored(result, job.transfer)
    run_dir = _graph_run_dir(job.output, detector, seed) if is_graph else None
    if result is not None and stale and is_graph and kept_checkpoint(result, run_dir) is None:
        log.info("%s seed %d: no kept checkpoint to score %s; fitting again", detector.name,
                 seed, ", ".join(t.name for t in stale))  # fmt: skip
        result = None
    cli = None
    changed = rekeyed or result is None
    if result is None:
        result, cli = _computed(job, graph, key)
        stale = job.transfer
    if stale:
        if is_graph:
            cli = cli or _graph_cli(detector, job.options, seed, job.output, graph)
            checkpoint = kept_checkpoint(result, run_dir)
            transferred = {t.name: graph_transfer_scores(cli, t, job.options["root"], checkpoint)
                           for t in stale}  # fmt: skip
        else:
            split = job.split_and_qids[0]
            transferred = {t.name: trace_transfer_scores(detector, job.features, split, seed, t)
                           for t in stale}  # fmt: skip
        result = with_transfer(result, stale, transferred)
    if changed or stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result))
    return result


def _computed(job: Job, graph: dict, key: str) -> tuple[dict, HallugraphCLI | None]:
    """The job's detector fitted and tested (transfer stores aside), and the fitted graph CLI."""
    detector, seed = job.detector, job.seed
    split, test_qids = job.split_and_qids
    start = time.perf_counter()
    labels = split.labels["test"]
    cli = None
    if isinstance(detector, GraphDetector):
        qids, scores, settings, cli = _graph_scores(detector, job.options, seed, job.output, graph)
        if qids != test_qids:
            raise UserError(
                f"{detector.name} was tested on other questions than the benchmark's split "
                f"(seed {seed}); its config must use nodes: all or the same graphs"
            )
    else:
        outcome = detector.run(job.features, split, seed)
        scores, settings = outcome.test_scores, outcome.settings
    result = {
        "key": key,
        "seed": seed,
        **seed_metrics(np.asarray(scores, dtype=float), labels),
        "settings": settings,
        "seconds": time.perf_counter() - start,
        "n_train": len(split.labels["train"]),
        "test_question_ids": test_qids,
        "test_labels": labels.tolist(),
        "scores": np.asarray(scores, dtype=float).tolist(),
    }
    return result, cli


def _plain_config(cfg, options: dict) -> dict:
    """The resolved configuration as JSON (the config files it was read from as paths)."""
    config = cfg.as_dict()
    config["config"] = [str(path) for path in config.get("config") or []]
    return {**config, "data": options}


def _label_methods(store, datamodule: HallucinationGraphDataModule) -> dict:
    """How the labels in use were made: the store index's label methods over the benchmarked
    questions, and the data module's label options."""
    used = {qid for split in SPLITS for qid in datamodule.datasets[split].question_ids}
    methods = Counter(store.rows[qid].label_method for qid in used)
    label_options = {k: v for k, v in datamodule.hparams.items() if "label" in k}
    source = datamodule.datasets["test"].label_source
    if source.name == "index":
        summary = ", ".join(f"{method} ({n})" for method, n in methods.items())
    else:
        labelled = sum(label is not None for label in source.labels.values())
        summary = f"{label_options['labels']}, {Path(source.name).name} ({labelled} labelled)"
    return {
        "index": dict(methods),
        "data_options": label_options,
        "source": source.describe(),
        "summary": summary,
    }


def _select(names: list[str] | None) -> list[Detector]:
    if names is None:
        return list(DETECTORS)
    known = {d.name: d for d in DETECTORS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UserError(f"unknown detector(s) {unknown}; choose from {', '.join(known)}")
    return [known[name] for name in names]


def main(argv: list[str]) -> None:
    parser = build_parser(f"{PROG} benchmark")
    cfg = parser.parse_args(normalise(parser, argv))
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    path = run(cfg, argv)
    if path is None:
        return
    print(path.read_text(encoding="utf-8"), end="")
    extra = ["learning_curve.json", "learning_curve.md", "learning_curve.png"] * bool(
        cfg.train_sizes
    ) + ["transfer.png"] * bool(cfg.transfer_traces)
    written = [path, path.with_suffix(".json"), path.with_suffix(".png")]
    written += [path.parent / name for name in extra]
    print(f"written: {', '.join(map(str, written))}")
