"""The learning rate of every optimizer step in TensorBoard, whatever `log_every_n_steps` says."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import LearningRateMonitor

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
        self._sources: tuple[tuple[Any, ...], list[str], list[dict[str, Any]]] | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step LearningRateMonitor logs at
        if step == self._last_step:
            return  # another micro-batch of the same optimizer step (gradient accumulation)
        self._last_step = step
        self._add((step, self._read(trainer)))
        if writes_logs_this_step(trainer):  # when Lightning writes the step's other metrics
            self._flush(trainer)

    def _read(self, trainer: pl.Trainer) -> dict[str, float]:
        """{tag: lr} of this step. Lightning's `_extract_stats` finds the tags anew each call (about 50 µs); they are
        found once per set of optimizers and schedulers here, and the lrs read from their param groups."""
        if self.log_momentum or self.log_weight_decay:
            return self._extract_stats(trainer, "any")  # tags beside the lr: Lightning's own reading
        key = (*map(id, trainer.optimizers), *(id(c.scheduler) for c in trainer.lr_scheduler_configs))
        if self._sources is None or self._sources[0] != key:
            stats = self._extract_stats(trainer, "any")
            # Lightning's order: the optimizers of the schedulers, then the others; each one's param groups in order
            scheduled = [c.scheduler.optimizer for c in trainer.lr_scheduler_configs]
            optimizers = [*scheduled, *(o for o in trainer.optimizers if all(o is not s for s in scheduled))]
            groups = [group for optimizer in optimizers for group in optimizer.param_groups]
            if len(groups) != len(stats):  # an optimizer behind several schedulers: keep Lightning's reading
                return stats
            self._sources = (key, list(stats), groups)
        _, tags, groups = self._sources
        return {tag: group["lr"] for tag, group in zip(tags, groups, strict=True)}

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
