"""The shared ``LightningModule``: loss, metrics and the decision threshold for every detector.

Subclasses only say how a batch of graphs becomes one logit per graph (``forward``). Label 1 is
*hallucinated*, so a probability is "how likely this answer is wrong".
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torch_geometric.data import Batch

from common import UserError
from graphs import SPLITS
from training.metrics import ScoreCollector, ThresholdRule, choose_threshold, evaluate

log = logging.getLogger(__name__)


class GraphClassifier(LightningModule):
    """Binary graph classifier with BCE-with-logits, torchmetrics and a validation-chosen threshold.

    Args:
        in_channels: node feature width (the LLM hidden size, the attention diagonal or both;
            linked from the data module, never typed).
        edge_dim: ``edge_attr`` width (heads kept separately, or every (layer, head) pair of a
            union graph) or ``None`` for graphs with a scalar ``edge_weight`` (linked).
        pos_weight: weight of the positive (hallucinated) class in the loss; ``"auto"`` takes
            ``negatives / positives`` of the training split from the data module, ``None`` is 1.
        threshold_rule: how the decision threshold is chosen on validation: maximise Youden's J
            (TPR - FPR, balanced between the classes) or the F1 of the hallucinated class (which,
            when most answers are hallucinated, favours flagging everything). It is stored in
            the checkpoint (buffer ``threshold``).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    def __init__(
        self,
        in_channels: int,
        edge_dim: int | None = None,
        pos_weight: float | Literal["auto"] | None = "auto",
        threshold_rule: ThresholdRule = "youden",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if not lr > 0 or weight_decay < 0:
            raise UserError(
                f"--model.init_args.lr must be > 0 and weight_decay >= 0 (got lr={lr}, "
                f"weight_decay={weight_decay})"
            )
        self.save_hyperparameters()
        self.register_buffer("threshold", torch.tensor(0.5))
        fixed_weight = 1.0 if pos_weight in (None, "auto") else pos_weight
        self.register_buffer("pos_weight", torch.tensor(float(fixed_weight)))
        # ModuleDict keys must not shadow Module attributes ("train"), hence the suffix.
        self.scores = nn.ModuleDict({f"{stage}_scores": ScoreCollector() for stage in SPLITS})
        self.test_results: dict | None = None

    def forward(self, batch: Batch) -> torch.Tensor:
        """One logit per graph, ``[num_graphs]``."""
        raise NotImplementedError

    def setup(self, stage: str) -> None:
        if self.hparams.pos_weight != "auto" or stage != "fit":
            return
        weight = getattr(self.trainer.datamodule, "pos_weight", None)
        if weight is None:
            log.warning("pos_weight='auto' but the data module gives none; using 1")
            return
        self.pos_weight.fill_(weight)
        log.info("pos_weight %.3f (negatives / positives of the training split)", weight)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        logits = self(batch)
        targets = batch.y.view(-1)
        loss = F.binary_cross_entropy_with_logits(
            logits, targets.float(), pos_weight=self.pos_weight
        )
        self.log(
            f"{stage}/loss",
            loss,
            batch_size=batch.num_graphs,
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
        )
        self.scores[f"{stage}_scores"].update(torch.sigmoid(logits), targets)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        probs = torch.sigmoid(self(batch))
        return {
            "question_id": list(batch.question_id),
            "score": probs,
            "label": (probs >= self.threshold).long(),
        }

    def _collected(self, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's scores from every rank; the collector is emptied for the next epoch."""
        collector = self.scores[f"{stage}_scores"]
        probs, targets = collector.compute()
        collector.reset()
        # torchmetrics squeezes a one-element result to a scalar.
        return probs.view(-1), targets.view(-1)

    def _epoch_metrics(self, stage: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        probs, targets = self._collected(stage)
        if stage == "val" and not self.trainer.sanity_checking:
            self.threshold.fill_(choose_threshold(probs, targets, self.hparams.threshold_rule))
        metrics = evaluate(probs, targets, float(self.threshold))
        # Computed from the gathered scores, so identical on every rank: the sync (a mean) keeps
        # the values and tells Lightning every rank agrees.
        self.log_dict(
            {f"{stage}/{key}": float(value) for key, value in metrics.items()}, sync_dist=True
        )
        return probs, targets, metrics

    def on_train_epoch_end(self) -> None:
        probs, targets = self._collected("train")
        self.log("train/auroc", evaluate(probs, targets, 0.5)["auroc"], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        probs, targets, metrics = self._epoch_metrics("test")
        self.test_results = {"probs": probs.cpu(), "targets": targets.cpu(), "metrics": metrics}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
