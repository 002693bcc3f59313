"""`nlparena schedule -c CONFIG [--steps N] [--out lr.png]`: the learning-rate curve a config would produce.

The curve is not recomputed from formulas: the config's own Trainer, optimizer, scheduler (with its
`lr_scheduler_interval`) and callbacks (Warmup, LinearScaling, ...) run Lightning's fit loop over the config's
data, with a training step that computes nothing and validation off, and the lr of every optimizer step is
recorded. So the drawing follows training wherever training goes (accumulation, epochs converted to steps,
schedulers stepped per epoch), and a bug in one shows in the other.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import MethodType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from nlparena.callbacks import LinearScaling
from nlparena.cli.checks import check_trainer_settings, check_writable_folder
from nlparena.cli.lightning import NlpArenaCLI
from nlparena.cli.parser import NlpArenaParser
from nlparena.errors import ConfigError, OneLineArgumentParser, read_yaml
from nlparena.figures import lr_curve_figure


class _LrRecorder(Callback):
    """The lr of every param group at each optimizer step, as the step is taken."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.lrs.append([group["lr"] for group in optimizer.param_groups])


class _OneShareOfTheData(Callback):
    """Limit each epoch to one process's share of the training batches, as a run on `world` processes has it
    (DistributedSampler's: ceil(examples / world) per process, then batches), so that steps per epoch, epochs
    converted to steps and the run's length are those of the multi-device run."""

    def __init__(self, world: int) -> None:
        self.world = world

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        examples = len(trainer.datamodule.train_dataloader().dataset)
        batch_size = trainer.datamodule.batch_size
        share = math.ceil(math.ceil(examples / self.world) / batch_size)
        limit = trainer.limit_train_batches  # the config's own limit applies to each process's share
        trainer.limit_train_batches = max(1, int(share * limit)) if isinstance(limit, float) else min(share, limit)
        rank_zero_info(
            f"schedule: drawn in one process for {self.world} processes: each epoch is one process's "
            f"{trainer.limit_train_batches} batches"
        )


def _no_training_step(self: pl.LightningModule, batch: Any, batch_idx: int) -> torch.Tensor:
    # A loss that reaches no parameter: backward and the optimizer step run (so the schedulers step exactly
    # as in training) but change nothing.
    return torch.zeros((), requires_grad=True)


def _count_devices(devices: Any, accelerator: Any) -> int:
    """How many devices per node `trainer.devices` asks for; "auto" / -1 count 1 on CPU."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if str(devices) in ("auto", "-1"):
        if accelerator not in ("cpu", "auto", None) or torch.cuda.is_available():
            raise ConfigError(
                f"trainer.devices={devices}: `schedule` cannot tell how many devices that is; give the number"
            )
        return 1
    try:
        return int(devices)
    except ValueError:
        raise ConfigError(f"trainer.devices={devices!r}: give a number of devices, a list of them or 'auto'") from None


class ScheduleCLI(NlpArenaCLI):
    """The `fit` configuration of a config, changed to one CPU process that neither validates nor logs."""

    hold_until_run = True  # `curve` runs the fit loop through `run_checked`

    def __init__(self, args: list[str], steps: int | None) -> None:
        self.steps = steps
        super().__init__(args=args, run=False, save_config_callback=None)

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        scheduler = self.config.get("lr_scheduler")
        if scheduler is not None and scheduler.class_path.endswith("ReduceLROnPlateau"):
            raise ConfigError(
                "lr_scheduler ReduceLROnPlateau: its lr depends on validation results, which `schedule` "
                "does not compute; draw another scheduler"
            )
        trainer = self.config.trainer
        check_trainer_settings(trainer)  # the config's own devices, nodes, ... before one process replaces them
        # LinearScaling must count the devices and nodes the config asks for, not the one process drawing
        self.planned_devices = (_count_devices(trainer.devices, trainer.accelerator), trainer.num_nodes)
        one_quiet_process = {
            "accelerator": "cpu",
            "devices": 1,
            "num_nodes": 1,
            "strategy": "auto",
            "precision": None,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
        }
        if self.steps is not None:
            one_quiet_process.update({"max_steps": self.steps, "max_epochs": -1, "max_time": None})
        for key, value in one_quiet_process.items():
            trainer[key] = value

    def curve(self) -> list[list[float]]:
        """Run the fit loop and return the lr of every param group at every optimizer step."""
        return self.run_checked(self._fit_recording)

    def _fit_recording(self) -> list[list[float]]:
        recorder = _LrRecorder()
        unneeded = (LearningRateMonitor, EarlyStopping, ModelCheckpoint)  # they need a logger or validation
        callbacks = [c for c in self.trainer.callbacks if not isinstance(c, unneeded)]
        for callback in callbacks:
            if isinstance(callback, LinearScaling):
                callback.planned_devices = self.planned_devices
        devices, nodes = self.planned_devices
        if devices * nodes > 1:
            callbacks.append(_OneShareOfTheData(devices * nodes))
        self.trainer.callbacks = [*callbacks, recorder]
        self.model.training_step = MethodType(_no_training_step, self.model)
        self.trainer.fit(self.model, datamodule=self.datamodule)
        return recorder.lrs


NEEDS = {  # why `schedule` needs each class: it runs the config's fit loop
    "data": "the steps per epoch come from the data's size and batch size",
    "model": "the optimizer and its scheduler are built on the model's parameters",
}


def check_data_and_model_given(configs: list[str], overrides: list[str]) -> None:
    """One line saying which of data and model neither a config file nor the command line gives, and why `schedule`
    needs it (instead of the parser's bare "the following arguments are required")."""
    given = {key for key, value in NlpArenaParser.classes_on_command_line(overrides).items() if value is not None}
    given |= {key for key in NEEDS for arg in overrides if arg.startswith(f"--{key}.")}  # `--model.class_path X`
    for path in configs:
        content = read_yaml(path) if os.path.isfile(path) else None  # inline or missing: the parser says
        if isinstance(content, dict):
            given |= {key for key in NEEDS if content.get(key) is not None}
    missing = [key for key in NEEDS if key not in given]
    if missing:
        options = " and ".join(f"--{key}" for key in missing)
        keys = " and ".join(f"{key}:" for key in missing)
        reasons = ", and ".join(NEEDS[key] for key in missing)
        raise ConfigError(
            f"nlparena schedule: give {options} (or {keys} in a -c config), as for `nlparena fit`: {reasons}"
        )


def schedule(args: list[str]) -> list[list[float]]:
    """`nlparena schedule`: draw the lr curve to `--out` (PNG) and its values to the same name with .csv."""
    parser = OneLineArgumentParser(
        prog="nlparena schedule",
        description="Draw the learning-rate curve a config would produce, without training. Other options "
        "(--trainer.max_epochs 5, --optimizer.lr 0.01, ...) change the config as in `nlparena fit`.",
    )
    parser.add_argument("-c", "--config", action="append", default=[], help="config file, as for `nlparena fit`")
    parser.add_argument("--steps", type=int, help="draw this many optimizer steps (default: the config's run)")
    parser.add_argument("--out", type=Path, default=Path("lr.png"), help="PNG to write (default lr.png)")
    opts, overrides = parser.parse_known_args(args)
    if opts.steps is not None and opts.steps < 1:
        raise ConfigError(f"--steps {opts.steps}: must be at least 1")
    if opts.out.suffix.lower() != ".png":
        raise ConfigError(f"--out {opts.out}: must be a .png file")
    check_writable_folder(opts.out.parent, f"--out {opts.out}")
    check_data_and_model_given(opts.config, overrides)
    cli_args = [arg for path in opts.config for arg in ("--config", path)] + overrides
    lrs = ScheduleCLI(cli_args, opts.steps).curve()
    if not lrs:
        raise ConfigError("schedule: the run takes no optimizer step (is the training split empty?)")
    title = " + ".join(Path(path).name for path in opts.config) or "defaults"
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    lr_curve_figure(lrs, f"{title}: {len(lrs)} optimizer steps").savefig(opts.out, dpi=120)
    table = opts.out.with_suffix(".csv")
    header = ",".join(["step", *(f"lr_group{g}" for g in range(len(lrs[0])))])
    rows = [",".join([str(step), *(f"{lr:.10g}" for lr in row)]) for step, row in enumerate(lrs)]
    table.write_text("\n".join([header, *rows]) + "\n")
    first = [row[0] for row in lrs]
    peak = max(range(len(first)), key=first.__getitem__)
    rank_zero_info(
        f"{opts.out} ({table.name}): {len(lrs)} optimizer steps; lr {first[0]:.4g} at step 0, "
        f"peak {first[peak]:.4g} at step {peak}, {first[-1]:.4g} at the last step"
    )
    return lrs
