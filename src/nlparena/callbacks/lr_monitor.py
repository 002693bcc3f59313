"""The learning rate of every optimizer step in TensorBoard, whatever `log_every_n_steps` says."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import LearningRateMonitor


class StepLearningRateMonitor(LearningRateMonitor):
    """Lightning's LearningRateMonitor (`lr-AdamW`, one tag per optimizer and param group), written at every
    optimizer step instead of every `log_every_n_steps`: a warmup of a few dozen steps, or a schedule drawn by
    `nlparena schedule`, can then be checked point by point against the logged curve. The value is a Python
    float read from the optimizer (no device sync); a point per step costs about 1 % of a quick-start step
    (benchmarks/README.md).

    Listed after the config's callbacks (LightningCLI appends its defaults), it logs the lr that Warmup and
    LinearScaling have set for the step.
    """

    def __init__(self, log_momentum: bool = False, log_weight_decay: bool = False) -> None:
        super().__init__(logging_interval="step", log_momentum=log_momentum, log_weight_decay=log_weight_decay)
        self._last_step = -1

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step LearningRateMonitor logs at
        if step == self._last_step:
            return  # another micro-batch of the same optimizer step (gradient accumulation)
        self._last_step = step
        stats = self._extract_stats(trainer, "any")  # every scheduler, whatever its interval, as the parent does
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=step)
