"""What every nlparena LightningModule shares: a task family, a headline metric and how it is checkpointed."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn


def cut_positional_tables(state: dict[str, Any], size: int) -> list[str]:
    """Cut the learned positional tables of a state dict to `size` rows (rows beyond the data's lengths are
    never read); returns the keys of the tables that are shorter than `size`, which no cut can fit."""
    tables = [key for key in state if key.endswith("positions.table.weight")]  # LearnedPositions in layers.py
    for key in tables:
        state[key] = state[key][:size]
    return [key for key in tables if state[key].shape[0] < size]


class ArenaModel(pl.LightningModule):
    """Base of the models users pick with `--model`.

    `family` says which data modules it trains on (their `family` must match); `headline_metric` is what
    checkpoints keep the best of and what reports compare.
    """

    family: ClassVar[Literal["translation", "classification", "pretraining"]]
    headline_metric: ClassVar[str]
    headline_mode: ClassVar[Literal["min", "max"]] = "max"

    def build(self, network: type[nn.Module]) -> nn.Module:
        """The network, from this model's hyperparameters of the same names (after `save_hyperparameters`)."""
        names = inspect.signature(network).parameters
        return network(**{key: value for key, value in self.hparams.items() if key in names})

    def configure_callbacks(self) -> list[Callback]:
        """Keep the last checkpoint and the best by the headline metric (replaces a default ModelCheckpoint)."""
        if not self.trainer.checkpoint_callbacks:
            return []
        return [
            ModelCheckpoint(
                monitor=self.headline_metric,
                mode=self.headline_mode,
                save_last=True,
                filename="best-epoch{epoch:03d}-step{step}",
                auto_insert_metric_name=False,
            )
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the token strings with the weights: `nlparena translate` reads and writes text with them, and
        fine-tuning from a checkpoint checks that the vocabularies match."""
        vocab = getattr(self.trainer.datamodule, "vocab", None)
        if vocab is not None:
            checkpoint["vocabulary"] = vocab.tokens
