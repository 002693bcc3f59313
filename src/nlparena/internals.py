"""The private names of other libraries that nlparena reads or overrides, each where the library has no public way to
the same behaviour, with the reason. tests/test_internals.py and tests/test_refusals.py fail when a new release
renames one. Imports nothing of ours."""

from __future__ import annotations

import lightning.pytorch as pl

# -- LightningCLI hooks that NlpArenaCLI overrides (cli/lightning.py) ------------------------------------------------
LIGHTNING_CLI_HOOKS = {
    # LightningCLI merges a checkpoint's hyperparameters over the config silently, between parsing and
    # `before_instantiate_classes`, and no public hook runs in its place
    "_parse_ckpt_path": "read --ckpt_path and merge only what the config left at its defaults",
    # the Trainer's fit/validate/test/predict call is made here; the public `before_<subcommand>` hooks cannot wrap it
    # to hold back the start-up lines and remove a run folder left by a run that failed while it was set up
    "_run_subcommand": "check the run, then run it with the start-up lines held back",
}


def logging_step(trainer: pl.Trainer) -> int:
    """The step Lightning's loggers write `self.log` values at (and its LearningRateMonitor the lr): the optimizer
    steps taken so far, without the one of a batch whose validation runs, so that an epoch's validation scalars sit at
    its last training step. Lightning keeps it in its fit loop and has no public property for it: `global_step` is
    one ahead during an epoch's validation, and counts every optimizer of a step."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped
