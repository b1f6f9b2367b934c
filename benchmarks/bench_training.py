"""Training graphs per second on CPU: GCN and GAT detectors on real SmolLM2 attention graphs.

python -m benchmarks.bench_training --traces /tmp/stores/smollm2_triviaqa200 --layer 15

Two rates per detector, on the training split (140 graphs of block 15 at the seed's settings):
``step`` is forward + backward + AdamW on batches collated once (the model's own cost), and
``fit`` is ``Trainer.fit`` epochs without validation (loading, collation and Lightning included).
Best of three rounds. ``python -m training`` sets ``OMP_WAIT_POLICY=PASSIVE`` (see
training/__main__.py); run with and without it to see why.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import logging
import os
import platform
import time
import warnings

import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from graphs import GraphSpec, HallucinationGraphDataset
from training.models import GATClassifier, GCNClassifier

DETECTORS = {
    "GCN (edge_weight: head mean)": (GCNClassifier, "mean", {}),
    "GAT v2, 4 heads (edge_attr: head mean)": (GATClassifier, "mean", {}),
    "GAT v2, 4 heads (edge_attr: 9 heads)": (GATClassifier, "heads", {}),
}


def best_of_three(run, n_graphs: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n_graphs / best


def step_rate(model, batches: list[Batch], n_graphs: int) -> float:
    optimizer = model.configure_optimizers()
    model.train()

    def epoch() -> None:
        for batch in batches:
            optimizer.zero_grad()
            F.binary_cross_entropy_with_logits(model(batch), batch.y.float()).backward()
            optimizer.step()

    epoch()  # warm-up
    return best_of_three(epoch, n_graphs)


def fit_rate(model, dataset, batch_size: int, epochs: int) -> float:
    def fit() -> None:
        trainer = Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, DataLoader(dataset, batch_size=batch_size, shuffle=True))

    return best_of_three(fit, len(dataset) * epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default="/tmp/stores/smollm2_triviaqa200")
    parser.add_argument("--root", default="/tmp/bench_training_graphs")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    torch.set_num_threads(args.threads)
    seed_everything(0, verbose=False)

    print(
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| detector | graphs | nodes/graph | edges/graph | step graphs/s | fit graphs/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (model_class, head_mode, kwargs) in DETECTORS.items():
        spec = GraphSpec(block=args.layer, head_mode=head_mode)
        dataset = HallucinationGraphDataset(args.root, args.traces, spec, split="train")
        graphs = [dataset[i] for i in range(len(dataset))]
        batches = [
            Batch.from_data_list(graphs[i : i + args.batch_size])
            for i in range(0, len(graphs), args.batch_size)
        ]
        edge_dim = graphs[0].edge_attr.shape[1] if head_mode == "heads" else None
        model = model_class(
            in_channels=graphs[0].num_features, edge_dim=edge_dim, pos_weight=None, **kwargs
        )
        steps = step_rate(model, batches, len(graphs))
        fits = fit_rate(model, dataset, args.batch_size, args.epochs)
        nodes = sum(g.num_nodes for g in graphs) / len(graphs)
        edges = sum(g.num_edges for g in graphs) / len(graphs)
        print(f"| {name} | {len(graphs)} | {nodes:.0f} | {edges:.0f} | {steps:.0f} | {fits:.0f} |")


if __name__ == "__main__":
    main()
