"""A callback that records what a compare trial's process looks like, for the tests of how trials start."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


class TrialProbe(Callback):
    """Writes the process's parent, argv, main module, cwd, torch threads and environment to `process.json` in the
    run's folder when fit starts; draws no random number."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {
            "parent": os.getppid(),
            "argv0": sys.argv[0],
            "main": sys.modules["__main__"].__spec__.name,
            "cwd": os.getcwd(),
            "threads": torch.get_num_threads(),
            "environment": dict(os.environ),
        }
        Path(trainer.log_dir, "process.json").write_text(json.dumps(state))
