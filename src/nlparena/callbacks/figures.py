"""Figures for TensorBoard (`add_figure`) and, at test time, PNG files in the run's folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from nlparena.networks.layers import shift_right

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def run_folder(trainer: pl.Trainer) -> Path:
    """The run's folder, read from the logger: `trainer.log_dir` is a broadcast under DDP, and only the
    global-zero process draws, so calling it there alone would hang the others."""
    return Path(getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir)


def attention_figure(weights: torch.Tensor, source: list[str], output: list[str], title: str) -> Figure:
    """Heatmap of weights (T, S): source tokens across, output tokens down."""
    from matplotlib.figure import Figure  # imported here: matplotlib costs start-up time to runs that draw nothing

    T, S = weights.shape
    fig = Figure(figsize=(1.0 + 0.42 * S, 1.0 + 0.42 * T), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
    ax.set_xticks(range(S), source, rotation=90)
    ax.set_yticks(range(T), output)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


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
                trainer.logger.experiment.add_figure(f"{stage}/attention_map/{i}", fig, trainer.global_step)


def confusion_figure(counts: torch.Tensor, class_names: list[str], title: str) -> Figure:
    """Counts (C, C), true class down and predicted across, beside the same rows normalised to sum to 1."""
    from matplotlib.figure import Figure

    C = counts.shape[0]
    fig = Figure(figsize=(4.0 + 2.2 * C, 1.5 + 0.9 * C), layout="constrained")
    for ax, values, name, fmt in zip(
        fig.subplots(1, 2),
        (counts, row_rates(counts)),
        ("counts", "normalised by true class"),
        ("{:.0f}", "{:.2f}"),
        strict=True,
    ):
        draw_matrix(fig, ax, values, class_names, name, fmt)
    fig.suptitle(title, fontsize=10)
    return fig


def row_rates(counts: torch.Tensor) -> torch.Tensor:
    """Counts (C, C) as the share of each true class (rows sum to 1; an empty row stays 0)."""
    return counts / counts.sum(1, keepdim=True).clamp(min=1)


def draw_matrix(fig: Figure, ax: Any, values: torch.Tensor, class_names: list[str], title: str, fmt: str) -> None:
    """One confusion-matrix panel on `ax`: values (C, C) as colours and numbers, true class down, predicted across."""
    C = values.shape[0]
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0)
    for i in range(C):
        for j in range(C):
            dark = values[i, j] > 0.5 * values.max()
            ax.text(j, i, fmt.format(float(values[i, j])), ha="center", va="center", color="w" if dark else "k")
    ax.set_xticks(range(C), class_names, rotation=45, ha="right")
    ax.set_yticks(range(C), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)


def counts_table(counts: torch.Tensor, class_names: list[str]) -> str:
    """The confusion matrix as a markdown table (TensorBoard text): rows true, columns predicted."""
    rows = ["| true \\ predicted | " + " | ".join(class_names) + " |", "|---" * (len(class_names) + 1) + "|"]
    for name, row in zip(class_names, counts.long().tolist(), strict=True):
        rows.append(f"| {name} | " + " | ".join(str(n) for n in row) + " |")
    return "\n".join(rows)


def parse_counts_table(text: str) -> tuple[list[str], torch.Tensor]:
    """The class names and counts (C, C) of a `counts_table` read back from TensorBoard (the comparison report)."""
    header, _, *rows = text.strip().splitlines()
    names = [cell.strip() for cell in header.strip("|").split("|")[1:]]
    counts = [[int(cell) for cell in row.strip("|").split("|")[1:]] for row in rows]
    return names, torch.tensor(counts)


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
        when = f", step {trainer.global_step}" if stage == "val" else ""
        fig = confusion_figure(counts.float(), names, f"{type(pl_module).__name__}, {stage}{when}")
        if stage == "test":
            folder = run_folder(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            fig.savefig(folder / "confusion_matrix_test.png", dpi=120)
        if isinstance(trainer.logger, TensorBoardLogger):
            experiment = trainer.logger.experiment
            experiment.add_text(f"{stage}/confusion_matrix_counts", counts_table(counts, names), trainer.global_step)
            experiment.add_figure(f"{stage}/confusion_matrix", fig, trainer.global_step)
