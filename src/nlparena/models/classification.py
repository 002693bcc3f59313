"""Sequence classification systems: a shared base (loss, metrics) and one subclass per network."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from nlparena.errors import ConfigError
from nlparena.models.base import (
    ArenaModel,
    attached_trainer,
    check_finite_weights,
    cut_positional_tables,
    network_config,
)
from nlparena.models.checkpoint_file import read_checkpoint
from nlparena.models.hugging_face import is_hugging_face, read_hugging_face_bert
from nlparena.models.metrics import RatioSums
from nlparena.networks.bert import BertConfig, BertForClassification, Pooling
from nlparena.networks.decoder_only import DecoderOnlyClassifier as DecoderOnlyClassifierNetwork
from nlparena.networks.decoder_only import DecoderOnlyConfig
from nlparena.networks.rnn import RNNConfig
from nlparena.networks.rnn_classifier import RNNClassifier as RNNClassifierNetwork


class ClassMetrics(nn.Module):
    """One stage's metrics: accuracy; macro and per-class precision, recall, F1; the confusion matrix.

    Every process updates them with its own share of the split; torchmetrics sums the states across
    processes when they are computed, which every process does (never rank 0 alone: that deadlocks).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        checks: dict[str, Any] = {"validate_args": False}  # inputs come from this model, not from a user
        self.accuracy = MulticlassAccuracy(num_classes, average="micro", **checks)
        self.macro = nn.ModuleDict(
            {
                "precision": MulticlassPrecision(num_classes, average="macro", **checks),
                "recall": MulticlassRecall(num_classes, average="macro", **checks),
                "f1": MulticlassF1Score(num_classes, average="macro", **checks),
            }
        )
        self.per_class = nn.ModuleDict(
            {
                "precision": MulticlassPrecision(num_classes, average=None, **checks),
                "recall": MulticlassRecall(num_classes, average=None, **checks),
                "f1": MulticlassF1Score(num_classes, average=None, **checks),
            }
        )
        # Normalised by the figure, not here, so that the counts stay available.
        self.confusion_matrix = MulticlassConfusionMatrix(num_classes, **checks)
        self.loss = MeanMetric()  # weighted by examples: the mean over every example of the split

    def update(self, preds: torch.Tensor, labels: torch.Tensor) -> None:
        for metric in (self.accuracy, *self.macro.values(), *self.per_class.values(), self.confusion_matrix):
            metric.update(preds, labels)


class ClassificationModel(ArenaModel):
    """Shared training and metrics for every classifier; subclasses build `self.net` (ids, segments) -> logits.

    Args:
        num_classes: number of classes, set by the data module (linked by the CLI, never typed).
        label_smoothing: mass moved from the gold class to the others in the loss.

    The other settings are ArenaModel's.
    """

    family = "classification"
    headline_metric = "val/macro_f1"

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ConfigError(f"model.num_classes={num_classes}: must be at least 2")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"model.label_smoothing={label_smoothing}: must be in [0, 1)")
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.train_window = RatioSums(("loss", "accuracy"))  # per example
        self.val_metrics = ClassMetrics(num_classes)
        self.test_metrics = ClassMetrics(num_classes)
        self.net: nn.Module

    def logged_metrics(self) -> list[str]:
        macro = [f"val/macro_{name}" for name in ("precision", "recall", "f1")]
        per_class = [f"val/{name}/*" for name in ("precision", "recall", "f1")]
        return ["train/loss", "train/accuracy", "val/loss", "val/accuracy", *macro, *per_class]

    def forward(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """Logits (B, C)."""
        return self.net(ids, segments)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["ids"], batch["segments"])
        loss = F.cross_entropy(logits, batch["labels"], label_smoothing=self.label_smoothing)
        examples = torch.full_like(batch["labels"][0], len(logits))
        right = (logits.argmax(-1) == batch["labels"]).sum()
        self.log_training_window(self.train_window, [loss.detach() * examples, examples, right, examples])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, list]:
        """The test metrics, and each example's text, true class, predicted class and correctness (`TestOutputs`)."""
        preds = self._evaluate(batch, "test")
        datamodule = self.trainer.datamodule
        vocab = getattr(datamodule, "vocab", None)
        names = getattr(datamodule, "class_names", None) or [str(i) for i in range(self.num_classes)]
        labels = batch["labels"].tolist()
        predicted = preds.tolist()
        return {
            "source": [
                vocab.decode(row) if vocab is not None else " ".join(map(str, row.tolist())) for row in batch["ids"]
            ],
            "reference": [names[i] for i in labels],
            "output": [names[i] for i in predicted],
            "correct": [int(p == t) for p, t in zip(predicted, labels, strict=True)],
        }

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["ids"], batch["segments"]).argmax(-1)

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """Update and log the stage's metrics; returns the predicted classes."""
        logits = self(batch["ids"], batch["segments"])
        m: ClassMetrics = getattr(self, f"{stage}_metrics")
        m.loss.update(F.cross_entropy(logits, batch["labels"]), weight=len(logits))
        self.log(f"{stage}/loss", m.loss, prog_bar=stage == "val")
        m.update(logits.argmax(-1), batch["labels"])
        # Logged as metric objects: Lightning computes them (synced across processes) at the epoch's end.
        self.log(f"{stage}/accuracy", m.accuracy)
        for name, metric in m.macro.items():
            self.log(f"{stage}/macro_{name}", metric, prog_bar=stage == "val" and name == "f1")
        return logits.argmax(-1)

    def on_validation_epoch_end(self) -> None:
        self._log_per_class("val")

    def on_test_epoch_end(self) -> None:
        self._log_per_class("test")

    def _log_per_class(self, stage: str) -> None:
        """Per-class precision / recall / F1 as scalars `stage/f1/<class>`; the confusion matrix is a figure."""
        m: ClassMetrics = getattr(self, f"{stage}_metrics")
        names = getattr(self.trainer.datamodule, "class_names", None) or [str(i) for i in range(self.num_classes)]
        for metric_name, metric in m.per_class.items():
            values = metric.compute()  # on every process, after the sync
            for class_name, value in zip(names, values, strict=True):
                # Equal on every process already; sync_dist (a mean of equal values) is what Lightning expects.
                self.log(f"{stage}/{metric_name}/{class_name}", value, sync_dist=True)
            metric.reset()
        m.confusion_matrix.reset()  # the ConfusionMatrices callback has drawn it by now (callbacks run first)


class BertClassifier(ClassificationModel):
    """BERT (Devlin et al. 2019) with a classification head, from scratch or from a BertPretraining checkpoint.

    Args:
        pooling: what the head reads: "pooler" (BERT's dense + tanh on [CLS], trained by NSP), "cls" (the
            [CLS] state itself) or "mean" (mean of the real tokens' states).
        pretrained: a BertPretraining checkpoint whose encoder (embeddings, layers, pooler) starts this model, or
            `hf:PATH`, a Hugging Face BERT saved with `save_pretrained` in the folder PATH (the `hf` extra);
            loaded when fitting starts, so resuming from this model's own checkpoint is unaffected.
    """

    weight_settings = ("pooling",)  # the head was trained on what this pooling gives it

    def __init__(
        self,
        bert: BertConfig = BertConfig(),
        pooling: Pooling = "pooler",
        pretrained: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        config = network_config(BertConfig, bert)
        # read now, so that a file that is not a checkpoint is refused before anything runs
        self._hugging_face: dict[str, torch.Tensor] | None = None
        if is_hugging_face(pretrained):
            self._hugging_face = read_hugging_face_bert(pretrained, config, self.vocab_size)
        elif pretrained is not None:
            state = read_checkpoint(pretrained, f"model.pretrained={pretrained}")["state_dict"]
            if not any(key.startswith("net.bert.") for key in state):
                raise ConfigError(f"model.pretrained={pretrained}: no BERT encoder weights (net.bert.*) in it")
        self.save_hyperparameters()
        self.pretrained = pretrained
        self.net = BertForClassification(config, self.vocab_size, self.max_len, self.num_classes, pooling, self.pad_id)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.pretrained is not None:
            self.load_pretrained_encoder(self.pretrained)

    def load_pretrained_encoder(self, path: str) -> tuple[list[str], list[str]]:
        """Copy the encoder of a BertPretraining checkpoint (or of `hf:PATH`) into this model; returns (missing, unused)
        keys."""
        if is_hugging_face(path):
            state = self._hugging_face or read_hugging_face_bert(path, self.net.bert.config, self.vocab_size)
            checkpoint = {"state_dict": {f"net.{key}": value for key, value in state.items()}}
            self._hugging_face = None  # loaded once; no need to keep a second copy of the weights
        else:
            checkpoint = read_checkpoint(path, f"model.pretrained={path}")
        state = checkpoint["state_dict"]
        check_finite_weights(state, f"model.pretrained={path}")
        ours = getattr(getattr(attached_trainer(self), "datamodule", None), "vocab", None)
        if ours is not None and checkpoint.get("vocabulary", ours.tokens) != ours.tokens:
            raise ConfigError(
                f"model.pretrained={path}: pre-trained on another vocabulary ({len(checkpoint['vocabulary'])} tokens, "
                f"this data has {len(ours.tokens)}); give the data the pre-training corpus's lexicon sizes"
            )
        encoder = {key.removeprefix("net.bert."): value for key, value in state.items() if key.startswith("net.bert.")}
        if not encoder:
            raise ConfigError(f"model.pretrained={path}: no BERT encoder weights (net.bert.*) in this checkpoint")
        # Pre-training inputs are sentence pairs, longer than most classification inputs: keep the positions used.
        # A shorter table stays as it is and fails the size check below.
        cut_positional_tables(encoder, self.hparams.max_len)
        try:
            missing, unexpected = self.net.bert.load_state_dict(encoder, strict=False)
        except RuntimeError as err:  # shapes differ: other sizes or another vocabulary
            first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise ConfigError(f"model.pretrained={path}: does not fit this model's sizes ({first})") from None
        unused = sorted(unexpected) + sorted(k for k in state if not k.startswith("net.bert."))
        rank_zero_info(
            f"Loaded {len(encoder) - len(unexpected)} encoder tensors from {path}; "
            f"missing (left as initialised): {sorted(missing) or 'none'}; not used: {unused or 'none'}"
        )
        return sorted(missing), unused


class RNNClassifier(ClassificationModel):
    """GRU/LSTM with attention pooling (Yang et al. 2016), to compare with BERT on the same data."""

    def __init__(self, rnn: RNNConfig = RNNConfig(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        config = network_config(RNNConfig, rnn)
        self.net = RNNClassifierNetwork(config, self.vocab_size, self.max_len, self.num_classes, self.pad_id)


class DecoderOnlyClassifier(ClassificationModel):
    """Decoder-only Transformer (causal, GPT-style) reading the text, classified from its last token's state or the
    mean of its states; its sizes are `decoder.*`.

    Args:
        pooling: `last`: the last token's state, which has read every token before it; `mean`: the mean of every
            token's state.
    """

    def __init__(
        self, decoder: DecoderOnlyConfig = DecoderOnlyConfig(), pooling: Literal["last", "mean"] = "last", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        config = network_config(DecoderOnlyConfig, decoder)
        self.net = DecoderOnlyClassifierNetwork(
            config, self.vocab_size, self.max_len, self.num_classes, self.pad_id, pooling
        )
