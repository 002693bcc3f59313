"""BERT pre-training: masked language model + next sentence prediction (Devlin et al. 2019)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from nlparena.models.base import ArenaModel, network_config
from nlparena.networks.bert import BertConfig, BertForPretraining

IGNORE = -100  # label of the positions MLM does not predict (data/pretraining.py writes it)


class BertPretraining(ArenaModel):
    """BERT trained on MLM + NSP; its checkpoint starts `BertClassifier --model.pretrained PATH`.

    Args:
        bert: BERT's sizes, the same as the classifier's that will be fine-tuned from this checkpoint.
        nsp_weight: weight of the NSP loss beside the MLM loss (1 in BERT).
        Others (vocab_size, max_len, pad_id) as in ArenaModel.
    """

    family = "pretraining"
    headline_metric = "val/mlm_accuracy"

    def __init__(self, bert: BertConfig = BertConfig(), nsp_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.nsp_weight = nsp_weight
        self.net = BertForPretraining(network_config(BertConfig, bert), self.vocab_size, self.max_len, self.pad_id)
        for stage in ("train", "val", "test"):
            accuracy = MulticlassAccuracy(self.vocab_size, average="micro", validate_args=False)
            setattr(self, f"{stage}_mlm_accuracy", accuracy)
            setattr(self, f"{stage}_nsp_accuracy", MulticlassAccuracy(2, average="micro", validate_args=False))

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
        mlm_accuracy: MulticlassAccuracy = getattr(self, f"{stage}_mlm_accuracy")
        nsp_accuracy: MulticlassAccuracy = getattr(self, f"{stage}_nsp_accuracy")
        mlm_accuracy(mlm_logits.argmax(-1), targets)
        nsp_accuracy(nsp_logits.argmax(-1), batch["is_next"])
        train = stage == "train"
        sync: dict[str, Any] = {} if train else {"sync_dist": True}
        self.log(f"{stage}/loss", loss, prog_bar=True, **sync)
        self.log(f"{stage}/mlm_loss", mlm_loss, **sync)
        self.log(f"{stage}/nsp_loss", nsp_loss, **sync)
        self.log(f"{stage}/mlm_accuracy", mlm_accuracy, on_step=False, on_epoch=True, prog_bar=not train)
        self.log(f"{stage}/nsp_accuracy", nsp_accuracy, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")
