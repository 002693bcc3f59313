"""What every nlparena LightningModule shares: a task family, a headline metric and how it is checkpointed."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn


def cut_positional_tables(state: dict[str, Any], size: int) -> list[str]:
    """Cut the learned positional tables of a state dict to `size` rows (rows beyond the data's lengths are
    never read); returns the keys of the tables that are shorter than `size`, which no cut can fit."""
    tables = [key for key in state if key.endswith("positions.table.weight")]  # LearnedPositions in layers.py
    for key in tables:
        state[key] = state[key][:size]
    return [key for key in tables if state[key].shape[0] < size]


def write_hparams_session(logger: TensorBoardLogger, params: dict[str, Any], metric_names: list[str]) -> None:
    """Write the HPARAMS plugin's session summaries (what `TensorBoardLogger.log_hyperparams(params, metrics)`
    writes) without its step-0 scalars of the metric values, which would put a false first point on the
    curves. TensorBoard reads each metric's value from the run's own scalars of that name."""
    from torch.utils.tensorboard.summary import hparams

    # the values given here are not written: only the metric names are (as MetricInfo)
    experiment, session_start, session_end = hparams(params, dict.fromkeys(metric_names, 0.0))
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, session_start, session_end):
        writer.add_summary(summary)


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

    def on_fit_start(self) -> None:
        """Register this run's hyperparameters with its headline metrics for TensorBoard's HPARAMS tab."""
        if not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                write_hparams_session(logger, self.tensorboard_hparams(), self.headline_metrics())

    def headline_metrics(self) -> list[str]:
        """The headline metric of validation and of test (`val/exact_match`, `test/exact_match`)."""
        return [self.headline_metric, "test/" + self.headline_metric.removeprefix("val/")]

    def tensorboard_hparams(self) -> dict[str, bool | int | float | str]:
        """The model's hyperparameters and class, and the data module's class (and hyperparameters, if it saved
        any), as the values the HPARAMS tab takes: None is left out, anything else not a number, bool or string
        is written as a string (`[3, 10]`)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        params: dict[str, Any] = {"model": type(self).__name__}
        params.update({key: value for key, value in self.hparams.items() if not key.startswith("_")})
        if datamodule is not None:
            params["data"] = type(datamodule).__name__
            params.update(
                {f"data.{key}": value for key, value in datamodule.hparams.items() if not key.startswith("_")}
            )
        return {
            key: value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in params.items()
            if value is not None
        }

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
