"""The private names of other libraries that nlparena reads, each where the library has no public way to the same
value: one small function per name, with the reason. tests/test_internals.py fails when a new release renames one."""

from __future__ import annotations

import lightning.pytorch as pl


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning's loggers write `self.log` values at (and its LearningRateMonitor the lr): the optimizer
    steps taken so far, without the one of a batch whose validation runs, so that an epoch's validation scalars sit at
    its last training step. Lightning keeps it in its fit loop and has no public property for it: `global_step` is
    one ahead during an epoch's validation, and counts every optimizer of a step."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped
