"""The checks `nlparena fit|validate|test|predict` makes before anything runs, each failing with one ConfigError line
that names the key and what is allowed.

Lightning and torch check many settings themselves, but in their own words (a traceback naming `Trainer(...)` or
`Invalid learning rate`), some only once training has started (`accumulate_grad_batches 0` divides by zero at the
first step, an optimizer is built in `configure_optimizers`, a monitored metric is looked up after the first
validation) and some not at all (`gradient_clip_val -1`). Here the settings are checked up front; what torch or
Lightning still refuse while building a class becomes a line naming the config key, found by elimination
(`cli/refusals.py`), never by reading their messages.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.optim.lr_scheduler import ReduceLROnPlateau

from nlparena.cli.refusals import REFUSALS, class_of, message_of, named_refusal, signature_defaults
from nlparena.errors import ConfigError, config_error_in
from nlparena.models import ArenaModel
from nlparena.models.base import flatten

# the sizes the data decides: `data.<source>` is linked to `model.<size>`
DATA_DECIDED = {"vocab_size": "vocab_size", "max_len": "max_length", "pad_id": "pad_id", "num_classes": "num_classes"}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _batches(value: Any) -> bool:
    """A `limit_*_batches` / `overfit_batches` value: a count of batches or a fraction of them."""
    return value is None or (_whole(value) and value >= 0) or (isinstance(value, float) and 0.0 <= value <= 1.0)


def _devices(value: Any) -> bool:
    if _whole(value):
        return value >= 1 or value == -1
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_whole(d) and d >= 0 for d in value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "-1"):
            return True
        if "," in text:
            ids = [d.strip() for d in text.split(",") if d.strip()]
            return bool(ids) and all(d.isdigit() for d in ids)
        return text.isdigit() and int(text) >= 1
    return False


BATCHES = "a number of batches (at least 0) or a fraction in [0.0, 1.0]"
TRAINER_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "devices": (_devices, "give a number of devices (at least 1), -1 or 'auto' for all, or a list of device ids"),
    "num_nodes": (lambda v: _whole(v) and v >= 1, "must be at least 1"),
    "accumulate_grad_batches": (lambda v: _whole(v) and v >= 1, "must be a whole number of batches, at least 1"),
    "max_epochs": (lambda v: v is None or (_whole(v) and v >= -1), "must be at least 0, or -1 for no limit"),
    "min_epochs": (lambda v: v is None or (_whole(v) and v >= 0), "must be at least 0"),
    "max_steps": (lambda v: _whole(v) and v >= -1, "must be at least 0, or -1 for no limit"),
    "min_steps": (lambda v: v is None or (_whole(v) and v >= 0), "must be at least 0"),
    "limit_train_batches": (_batches, BATCHES),
    "limit_val_batches": (_batches, BATCHES),
    "limit_test_batches": (_batches, BATCHES),
    "limit_predict_batches": (_batches, BATCHES),
    "overfit_batches": (_batches, BATCHES),
    "gradient_clip_val": (
        lambda v: v is None or (_number(v) and v >= 0),
        "must be at least 0 (0 or null: no clipping)",
    ),
    "gradient_clip_algorithm": (lambda v: v in (None, "norm", "value"), "choose 'norm' or 'value'"),
    "val_check_interval": (
        lambda v: not _number(v) or (_whole(v) and v >= 1) or (isinstance(v, float) and 0.0 < v <= 1.0),
        "a number of training batches (at least 1), a fraction of an epoch in (0.0, 1.0] or a time",
    ),
    "log_every_n_steps": (lambda v: v is None or (_whole(v) and v >= 1), "must be at least 1"),
    "check_val_every_n_epoch": (lambda v: v is None or (_whole(v) and v >= 1), "must be at least 1 (or null)"),
    "num_sanity_val_steps": (lambda v: v is None or (_whole(v) and v >= -1), "must be at least 0, or -1 for all"),
}


def check_trainer_settings(config: dict[str, Any]) -> None:
    """The Trainer's arguments that Lightning refuses in its own words, too late, or not at all."""
    for key, (allowed, rule) in TRAINER_RULES.items():
        if key in config and not allowed(config[key]):
            raise ConfigError(f"trainer.{key}={config[key]!r}: {rule}")


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception `err` was raised from (jsonargparse wraps a constructor's error in its own)."""
    seen = {id(err)}
    while True:
        cause = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if cause is None or id(cause) in seen:
            return err
        seen.add(id(cause))
        err = cause


def setup_error(
    err: BaseException, ckpt_path: str | None, load_refusal: Callable[[], str | None]
) -> ConfigError | None:
    """A ConfigError for what Lightning or torch refused while a run was set up, before it started any work (see
    `ReleaseAtStart`): a checkpoint whose weights do not load into the run (`load_refusal()` says why, loading them
    again), or a value Lightning refused then; None for anything else (a crash keeps its traceback)."""
    if config_error_in(err) is not None:
        return None
    root = root_cause(err)
    if ckpt_path and isinstance(root, (*REFUSALS, RuntimeError)):
        reason = load_refusal()
        if reason is not None:
            return ConfigError(f"--ckpt_path {ckpt_path}: cannot be loaded into this run ({reason})")
    if isinstance(root, (ValueError, MisconfigurationException)):
        return ConfigError(f"the run cannot start: {message_of(root)}")
    return None


def _init_args(init: Any) -> dict[str, Any]:
    args = init.get("init_args") or {}
    return args.as_dict() if isinstance(args, Namespace) else dict(args)


def _scheduled(scheduler: Any) -> Any:
    """`scheduler` stepped once: a value refused only when the schedule is computed (StepLR step_size 0)."""
    if not isinstance(scheduler, ReduceLROnPlateau):  # its step needs a metric
        with warnings.catch_warnings():  # "step() before optimizer.step()": this optimizer never steps
            warnings.simplefilter("ignore")
            scheduler.step()
    return scheduler


def check_optimizer(model: LightningModule, optimizer_init: Any, scheduler_init: Any) -> None:
    """Build the config's optimizer on the model's parameters and its scheduler on that optimizer once, as
    `configure_optimizers` will, so that a value they refuse is one line naming its key before anything runs."""
    if not optimizer_init:
        return
    optimizer_class, optimizer_args = class_of(optimizer_init["class_path"]), _init_args(optimizer_init)

    def optimizer(init_args: dict[str, Any]) -> Any:
        return optimizer_class(model.parameters(), **init_args)

    try:
        built = optimizer(optimizer_args)
    except REFUSALS as err:
        what, defaults = f"--optimizer {optimizer_class.__name__}", signature_defaults(optimizer_class)
        raise named_refusal(err, what, "optimizer.init_args.", optimizer, optimizer_args, defaults) from None
    if not scheduler_init:
        return
    scheduler_class, scheduler_args = class_of(scheduler_init["class_path"]), _init_args(scheduler_init)
    try:
        _scheduled(scheduler_class(built, **scheduler_args))
    except REFUSALS as err:
        what, defaults = f"--lr_scheduler {scheduler_class.__name__}", signature_defaults(scheduler_class)

        def scheduler(init_args: dict[str, Any]) -> Any:
            return _scheduled(scheduler_class(optimizer(optimizer_args), **init_args))

        raise named_refusal(err, what, "lr_scheduler.init_args.", scheduler, scheduler_args, defaults) from None


def check_data_decided(typed: dict[str, Any], datamodule: Any) -> None:
    """A size the data decides that was typed (`--model.max_len 5`) must be the data's own."""
    for size, value in typed.items():
        decided = getattr(datamodule, DATA_DECIDED[size], None)
        if decided is not None and value != decided:
            raise ConfigError(
                f"model.{size}={value}: the data decides it (--data {type(datamodule).__name__} gives {decided}); "
                "leave it out, the CLI passes it on"
            )


def check_monitors(trainer: Trainer, model: ArenaModel, scheduler_init: Any) -> None:
    """EarlyStopping, ModelCheckpoint and a scheduler's `monitor` (ReduceLROnPlateau) must name a metric that the
    model logs while fitting."""
    watched = [
        (f"trainer.callbacks {type(callback).__name__}(monitor={callback.monitor!r})", callback.monitor)
        for callback in trainer.callbacks
        if isinstance(callback, (EarlyStopping, ModelCheckpoint)) and callback.monitor
    ]
    monitor = flatten((scheduler_init or {}).get("init_args")).get("monitor")
    if monitor:
        watched.append((f"lr_scheduler.init_args.monitor={monitor!r}", monitor))
    logged = [*model.logged_metrics(), "lr-*"]
    for where, metric in watched:
        if not any(fnmatch.fnmatchcase(str(metric), pattern) for pattern in logged):
            raise ConfigError(f"{where}: {type(model).__name__} never logs {metric!r}; it logs {', '.join(logged)}")


def check_save_dirs(trainer: Trainer) -> None:
    """Every logger's `save_dir` must be a folder this process can create and write in."""
    for logger in trainer.loggers:
        save_dir = getattr(logger, "save_dir", None)
        if save_dir:
            check_writable_folder(Path(save_dir), f"trainer.logger.init_args.save_dir={save_dir}")


def check_writable_folder(folder: Path, key: str) -> None:
    """`folder`, or the nearest folder above it that exists (the rest is made when it is written), must be a folder
    this process can write in; a ConfigError naming `key` otherwise."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a link to nothing: no folder can be made through it
            raise ConfigError(f"{key}: {existing} is a link to {os.readlink(existing)}, which does not exist")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {existing} is not writable; give a folder you can write in")
    try:  # what os.access cannot tell: a read-only file system, or a folder that refuses even root
        os.rmdir(tempfile.mkdtemp(prefix=".nlparena-", dir=existing))
    except OSError as err:
        raise ConfigError(f"{key}: cannot write in {existing} ({err.strerror}); give another folder") from None
