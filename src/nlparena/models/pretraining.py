"""BERT pre-training: masked language model + next sentence prediction (Devlin et al. 2019)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from nlparena.models.base import ArenaModel, network_config
from nlparena.models.metrics import RatioSums
from nlparena.networks.bert import BertConfig, BertForPretraining

IGNORE = -100  # label of the positions MLM does not predict (data/pretraining.py writes it)


class BertPretraining(ArenaModel):
    """BERT trained on MLM + NSP; its checkpoint starts `BertClassifier --model.pretrained PATH`.

    Args:
        bert: BERT's sizes, the same as the classifier's that will be fine-tuned from this checkpoint.
        nsp_weight: weight of the NSP loss beside the MLM loss (1 in BERT).

    The other settings are ArenaModel's.
    """

    family = "pretraining"
    headline_metric = "val/mlm_accuracy"

    def __init__(self, bert: BertConfig = BertConfig(), nsp_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.nsp_weight = nsp_weight
        self.net = BertForPretraining(network_config(BertConfig, bert), self.vocab_size, self.max_len, self.pad_id)
        # training: the metrics of the steps since the last log, as sums (`log_training_window`)
        self.train_window = RatioSums(("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy"))
        for stage in ("val", "test"):
            accuracy = MulticlassAccuracy(self.vocab_size, average="micro", validate_args=False)
            setattr(self, f"{stage}_mlm_accuracy", accuracy)
            setattr(self, f"{stage}_nsp_accuracy", MulticlassAccuracy(2, average="micro", validate_args=False))
        # Validation and test losses as means over every masked token / example of the split, summed across
        # processes by torchmetrics, so N processes log what one does.
        for stage in ("val", "test"):
            setattr(self, f"{stage}_mlm_loss", MeanMetric())
            setattr(self, f"{stage}_nsp_loss", MeanMetric())

    def compiled_modules(self) -> list[torch.nn.Module]:
        """The encoder: the steps call it, then the heads on the masked positions only (a data-dependent shape)."""
        return [self.net.bert]

    def logged_metrics(self) -> list[str]:
        names = ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy")
        return [f"{stage}/{name}" for stage in ("train", "val") for name in names]

    def forward(self, ids: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MLM logits (B, S, V) and NSP logits (B, 2)."""
        return self.net(ids, segments)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        states = self.net.bert(batch["ids"], batch["segments"])  # (B, S, D)
        masked = batch["mlm_labels"] != IGNORE  # (B, S)
        targets = batch["mlm_labels"][masked]  # (N,)
        mlm_logits = self.net.mlm_logits_at(states, masked)  # (N, V): the vocabulary projection only where needed
        nsp_logits = self.net.nsp_logits(states)  # (B, 2)
        mlm_loss = F.cross_entropy(mlm_logits, targets)
        nsp_loss = F.cross_entropy(nsp_logits, batch["is_next"])
        loss = mlm_loss + self.nsp_weight * nsp_loss
        if stage == "train":
            n, b = (torch.full_like(batch["is_next"][0], size) for size in (len(targets), len(nsp_logits)))
            mlm_right, nsp_right = (
                (mlm_logits.argmax(-1) == targets).sum(),
                (nsp_logits.argmax(-1) == batch["is_next"]).sum(),
            )
            pairs = [
                loss.detach() * b,
                b,
                mlm_loss.detach() * n,
                n,
                nsp_loss.detach() * b,
                b,
                mlm_right,
                n,
                nsp_right,
                b,
            ]
            self.log_training_window(self.train_window, pairs)
            return loss
        mlm_accuracy: MulticlassAccuracy = getattr(self, f"{stage}_mlm_accuracy")
        nsp_accuracy: MulticlassAccuracy = getattr(self, f"{stage}_nsp_accuracy")
        mlm_accuracy.update(mlm_logits.argmax(-1), targets)
        nsp_accuracy.update(nsp_logits.argmax(-1), batch["is_next"])
        losses = {"mlm_loss": (mlm_loss, len(targets)), "nsp_loss": (nsp_loss, len(nsp_logits))}
        for name, (value, weight) in losses.items():
            getattr(self, f"{stage}_{name}").update(value.detach(), weight=weight)
        for name in losses:
            self.log(f"{stage}/{name}", getattr(self, f"{stage}_{name}"))
        self.log(f"{stage}/mlm_accuracy", mlm_accuracy, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/nsp_accuracy", nsp_accuracy, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_total_loss("val")

    def on_test_epoch_end(self) -> None:
        self._log_total_loss("test")

    def _log_total_loss(self, stage: str) -> None:
        """`stage/loss` = MLM loss + nsp_weight × NSP loss, each the split's mean (computed on every process)."""
        mlm_mean: MeanMetric = getattr(self, f"{stage}_mlm_loss")
        nsp_mean: MeanMetric = getattr(self, f"{stage}_nsp_loss")
        total = mlm_mean.compute() + self.nsp_weight * nsp_mean.compute()
        # equal on every process already; sync_dist (a mean of equal values) as Lightning expects
        self.log(f"{stage}/loss", total, prog_bar=stage == "val", sync_dist=True)
