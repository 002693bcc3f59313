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
    (`attention_maps/test_example0.png`). Works for any translation model whose network has
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
        if self.num_examples < 1 or not hasattr(net, "attention_weights") or stage not in splits:
            return
        if not trainer.is_global_zero:
            return
        examples = splits[stage][list(range(min(self.num_examples, len(splits[stage]))))]
        src = examples["src"].to(pl_module.device)
        out, weights = self.maps(pl_module, src)
        vocab = datamodule.vocab
        folder = Path(trainer.log_dir or ".") / "attention_maps"
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
