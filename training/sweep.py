"""``python -m training sweep-layers --config C [--layers 0 5 10] [--output DIR] [fit flags]``.

One detector per layer (fit, then test with the best checkpoint), each with its own report, and a
figure of test AUROC against layer. A linear probe on the same layer's mean answer hidden state
is drawn alongside: it separates "the graph helps" from "this layer's states already know".
"""

from __future__ import annotations

import logging
from pathlib import Path

from common import UserError, read_json
from extraction.store import TraceStore
from graphs import SPLITS
from training.baselines import PROBE_C, fit_logistic, mean_answer_state
from training.lightning_cli import PROG, HallugraphCLI, Option, parse_command
from training.report import REPORT, environment, plot_layer_sweep, write_json

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Train and test one detector per layer; plot test AUROC against layer. Other flags "
    f"(--config, --data.*, --model.*, --trainer.*) are read as by `{PROG} fit`."
)


def main(argv: list[str]) -> None:
    if "fit" in argv[:1]:
        raise UserError(f"`{PROG} sweep-layers` runs fit and test itself; drop `fit`")
    options = [
        Option("output", Path, Path("runs/sweep"), "folder for the per-layer runs, sweep.json "
               "and sweep_auroc.png"),
        Option("layers", list[int] | None, None, "blocks to sweep (default: every stored one)"),
    ]  # fmt: skip
    config, rest = parse_command("sweep-layers", DESCRIPTION, options, argv)
    # Without --layers, the config's own data section names the store: sweep all it holds.
    layers = config.layers or TraceStore(config.data.traces).stored_blocks
    results = []
    for layer in layers:
        cli = HallugraphCLI(
            args=[
                *rest,
                *("--data.graph.block", str(layer), "--data.graph.blocks", "null"),
                *("--trainer.default_root_dir", str(config.output / f"layer_{layer:02d}")),
            ],
            run=False,
        )
        results.append(_fit_and_test(cli, layer))
    _write(config.output, results)


def _fit_and_test(cli, layer: int) -> dict:
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, ckpt_path="best")
    report_path = Path(trainer.log_dir) / REPORT
    report = read_json(report_path)
    labels = {split: datamodule.datasets[split].labels for split in SPLITS}
    probe, _, _ = fit_logistic(
        mean_answer_state(datamodule), labels, model.hparams.threshold_rule, PROBE_C
    )
    log.info(
        "layer %d: %s AUROC %.3f, probe AUROC %.3f",
        layer,
        report["detector"],
        report["metrics"]["auroc"] or float("nan"),
        probe["auroc"],
    )
    return {
        "layer": layer,
        "detector": report["detector"],
        "metrics": report["metrics"],
        "auroc_ci95": report.get("auroc_ci95"),
        "probe_metrics": probe,
        "report": str(report_path),
        "data_sha256": report["data"]["sha256"],
        "labels": report["data"]["labels"],
    }


def _write(output: Path, results: list[dict]) -> None:
    detector = results[0]["detector"]
    summary = {
        "detector": detector,
        "layers": [result["layer"] for result in results],
        "labels": results[0]["labels"],
        "results": results,
        **environment(),
    }
    path = write_json(output / "sweep.json", summary)
    metrics = results[0]["metrics"]
    n_correct = metrics["n"] - metrics["n_hallucinated"]
    figure = plot_layer_sweep(
        output / "sweep_auroc.png",
        {
            detector: {r["layer"]: r["metrics"]["auroc"] for r in results},
            "linear probe, mean answer state": {
                r["layer"]: r["probe_metrics"]["auroc"] for r in results
            },
        },
        title=f"test AUROC by layer: {metrics['n']} test answers, "
        f"{metrics['n_hallucinated']} hallucinated / {n_correct} correct\n"
        f"labels: {results[0]['labels']}",
        intervals={detector: {r["layer"]: r["auroc_ci95"] for r in results}},
    )
    print(f"sweep: {path}\nfigure: {figure}")
