"""The learning rate of every optimizer step in TensorBoard, whatever `log_every_n_steps` says."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor

from nlparena.internals import logging_step
from nlparena.models.base import writes_logs_this_step


class StepLearningRateMonitor(LearningRateMonitor):
    """Lightning's LearningRateMonitor (`lr-AdamW`, one tag per optimizer and param group), with the lr of every
    optimizer step instead of every `log_every_n_steps`: a warmup of a few dozen steps, or a schedule drawn by
    `nlparena schedule`, can then be checked point by point against the logged curve.

    Each step only reads the lr of every param group (Python floats: no device sync) into a buffer; the points are
    written when Lightning writes the other training metrics (every `log_every_n_steps`), at the end of every epoch
    and of training, and when training stops on an error. Writing a point per step as it comes cost 1.5 % of a
    quick-start step; see benchmarks/README.md.

    A run of steps with the same lrs is written as its first and last steps (and the latest step at each write):
    TensorBoard draws straight lines between points, so the curve is the lr of every step all the same, and a
    constant lr costs no TensorBoard write per step (about 30 µs each).

    Listed after the config's callbacks (LightningCLI appends its defaults), it logs the lr that Warmup and
    LinearScaling have set for the step.
    """

    def __init__(self, log_momentum: bool = False, log_weight_decay: bool = False) -> None:
        super().__init__(logging_interval="step", log_momentum=log_momentum, log_weight_decay=log_weight_decay)
        self._last_step = -1
        self._pending: list[tuple[int, dict[str, float]]] = []
        # the latest step's point, and whether it is in `_pending` already (a step inside a run of equal lrs is not)
        self._latest: tuple[int, dict[str, float]] | None = None
        self._latest_kept = True
        # the optimizers, schedulers and param group counts the tags were found for; the tags; (optimizer, group) each
        self._sources: tuple[tuple[Any, ...], list[str], list[tuple[Any, dict[str, Any]]]] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        step = logging_step(trainer)  # the step LearningRateMonitor logs at
        if step == self._last_step:
            return  # another micro-batch of the same optimizer step (gradient accumulation)
        self._last_step = step
        self._add((step, self._read(trainer)))

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if writes_logs_this_step(trainer):  # when Lightning writes the step's other metrics, right after this hook
            self._flush(trainer)

    def _read(self, trainer: pl.Trainer) -> dict[str, float]:
        """{tag: value} of this step: the lr of every param group (and its momentum and weight decay if asked), under
        LearningRateMonitor's tags. Lightning finds the tags anew each step (about 50 µs); they are found once per set
        of optimizers, schedulers and param groups here (LearningRateMonitor's `on_train_start` names them)."""
        configs = trainer.lr_scheduler_configs
        optimizers = [*(c.scheduler.optimizer for c in configs)]  # Lightning's order: each scheduler's optimizer,
        optimizers += [o for o in trainer.optimizers if all(o is not s for s in optimizers)]  # then the others
        key = (
            *map(id, trainer.optimizers),
            *(id(c.scheduler) for c in configs),
            *(len(o.param_groups) for o in optimizers),
        )
        if self._sources is None or self._sources[0] != key:
            super().on_train_start(trainer, trainer.lightning_module)  # names the tags in `self.lrs`, in that order
            groups = [(optimizer, group) for optimizer in optimizers for group in optimizer.param_groups]
            self._sources = (key, list(self.lrs), groups)
        _, tags, groups = self._sources
        stats = {}
        for tag, (optimizer, group) in zip(tags, groups, strict=True):
            stats[tag] = group["lr"]
            if self.log_momentum:  # LearningRateMonitor's reading: Adam's beta1, else SGD's momentum
                betas = "betas" in optimizer.defaults
                stats[f"{tag}-momentum"] = group["betas"][0] if betas else group.get("momentum", 0)
            if self.log_weight_decay:
                stats[f"{tag}-weight_decay"] = group["weight_decay"]
        return stats

    def _add(self, point: tuple[int, dict[str, float]]) -> None:
        """Keep `point` if its lrs differ from the step before's (and keep that step's point too: it ends the run of
        equal lrs before the change); hold it back otherwise, as the possible end of a run."""
        if self._latest is not None and point[1] == self._latest[1]:
            self._latest, self._latest_kept = point, False
            return
        if not self._latest_kept:
            self._pending.append(self._latest)
        self._pending.append(point)
        self._latest, self._latest_kept = point, True

    def _flush(self, trainer: pl.Trainer) -> None:
        if not self._latest_kept:  # the latest step, so that the curve reaches it
            self._pending.append(self._latest)
            self._latest_kept = True
        for step, stats in self._pending:
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=step)
        if self._pending:  # what LearningRateMonitor leaves for a `monitor`: the latest value of each tag
            device = trainer.strategy.root_device
            trainer.callback_metrics.update(
                {k: torch.tensor(v, device=device) for k, v in self._pending[-1][1].items()}
            )
        self._pending.clear()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._latest, self._latest_kept = None, True  # a new fit's first step is always written

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._flush(trainer)
