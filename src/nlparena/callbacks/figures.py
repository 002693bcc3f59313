"""Callbacks that draw figures (nlparena/figures.py) to TensorBoard (`add_figure`) and, at test time, as PNG files
in the run's folder: attention maps and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from nlparena.events import counts_table
from nlparena.figures import attention_figure, confusion_figure
from nlparena.internals import logging_step  # a figure sits at the step of the scalars it belongs to
from nlparena.networks.layers import shift_right


def run_folder(trainer: pl.Trainer) -> Path:
    """The run's folder, read from the logger: `trainer.log_dir` is a broadcast under DDP, and only the
    global-zero process draws, so calling it there alone would hang the others."""
    return Path(getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir)


class AttentionMaps(Callback):
    """Attention of the decoder over the source for the first examples of the validation / test split.

    Drawn each validation epoch to TensorBoard and at test also as PNG files in the run's folder
    (`attention_maps/test_example0.png`). Works for any translation model (`family == "translation"`) whose network has
    `attention_weights(memory, tgt_in)` (Seq2SeqAttention, and the Transformer's last cross-attention);
    models without attention are left alone. Drawn by the global-zero process only: no metric, no sync.
    """

    def __init__(self, num_examples: int = 3) -> None:
        self.num_examples = num_examples

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._draw(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")

    def maps(self, pl_module: Any, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded output (B, L) of src (B, S) and the attention weights (B, L, S) behind it."""
        net = pl_module.net
        out = pl_module.decode(src)
        with torch.no_grad():
            weights = net.attention_weights(net.encode(src), shift_right(out))
        return out, weights

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", None)
        datamodule = trainer.datamodule
        splits = getattr(datamodule, "splits", {})
        translation = getattr(pl_module, "family", None) == "translation"
        if self.num_examples < 1 or not translation or not hasattr(net, "attention_weights") or stage not in splits:
            return
        if not trainer.is_global_zero:
            return
        examples = splits[stage][list(range(min(self.num_examples, len(splits[stage]))))]
        src = examples["src"].to(pl_module.device)
        out, weights = self.maps(pl_module, src)
        vocab = datamodule.vocab
        folder = run_folder(trainer) / "attention_maps"
        for i in range(src.shape[0]):
            source = [vocab.tokens[t] for t in src[i].tolist() if t != pl_module.pad_id]
            output = vocab.strings(out[i].tolist())
            fig = attention_figure(
                weights[i, : len(output), : len(source)].float().cpu(),
                source,
                output,
                f"{type(pl_module).__name__}, {stage} example {i}",
            )
            if stage == "test":
                folder.mkdir(parents=True, exist_ok=True)
                fig.savefig(folder / f"test_example{i}.png", dpi=120)
            if isinstance(trainer.logger, TensorBoardLogger):
                trainer.logger.experiment.add_figure(f"{stage}/attention_map/{i}", fig, logging_step(trainer))


class ConfusionMatrices(Callback):
    """The model's confusion matrix each validation epoch and at test: a figure (counts and normalised by true
    class) and its counts as a text table in TensorBoard, and at test also `confusion_matrix_test.png`.

    Works for any model with `val_metrics.confusion_matrix` / `test_metrics.confusion_matrix` (torchmetrics).
    Every process computes the matrix (torchmetrics syncs the counts; computing on one process only would
    hang the others); only the global-zero process draws and writes.
    """

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._draw(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        metric = getattr(getattr(pl_module, f"{stage}_metrics", None), "confusion_matrix", None)
        if metric is None:
            return
        counts = metric.compute().cpu()  # on every process: the sync is a collective
        if not trainer.is_global_zero:
            return
        names = getattr(trainer.datamodule, "class_names", None) or [str(i) for i in range(counts.shape[0])]
        step = logging_step(trainer)
        when = f", step {step}" if stage == "val" else ""
        fig = confusion_figure(counts.float(), names, f"{type(pl_module).__name__}, {stage}{when}")
        if stage == "test":
            folder = run_folder(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            fig.savefig(folder / "confusion_matrix_test.png", dpi=120)
        if isinstance(trainer.logger, TensorBoardLogger):
            experiment = trainer.logger.experiment
            experiment.add_text(f"{stage}/confusion_matrix_counts", counts_table(counts, names), step)
            experiment.add_figure(f"{stage}/confusion_matrix", fig, step)
