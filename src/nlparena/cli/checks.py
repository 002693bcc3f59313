"""The checks `nlparena fit|validate|test|predict` makes before anything runs, each failing with one ConfigError line
that names the key and what is allowed.

Lightning and torch check many settings themselves, but in their own words (a traceback naming `Trainer(...)` or
`Invalid learning rate`), some only once training has started (`accumulate_grad_batches 0` divides by zero at the
first step, an optimizer is built in `configure_optimizers`, a monitored metric is looked up after the first
validation) and some not at all (`gradient_clip_val -1`). Here the settings are checked up front; what torch or
Lightning still refuse while building a class becomes a line naming the config key.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import instantiate_class
from torch.optim.lr_scheduler import ReduceLROnPlateau

from nlparena.errors import ConfigError, config_error_in, one_line
from nlparena.models import ArenaModel
from nlparena.models.base import flatten

# what torch or Lightning raise for a value they refuse while a class is built
REFUSALS = (ValueError, TypeError, KeyError, IndexError, AssertionError, MisconfigurationException)
# the sizes the data decides: `data.<source>` is linked to `model.<size>`
DATA_DECIDED = {"vocab_size": "vocab_size", "max_len": "max_length", "pad_id": "pad_id", "num_classes": "num_classes"}
# how torch's messages name an argument: "Invalid learning rate: -1.0" is `lr`
SYNONYMS = {"learning rate": "lr", "beta": "betas", "epsilon": "eps", "Timer(duration": "max_time"}


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


def message_of(err: BaseException) -> str:
    """An exception's message on one line, at most 200 characters."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return one_line(text or type(err).__name__, 200)


def _named_key(message: str, keys: list[str]) -> str | None:
    """The first of `keys` that `message` names (as a word, or by one of torch's SYNONYMS)."""
    found = []
    for key in keys:
        match = re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message, re.IGNORECASE)
        if match:
            found.append((match.start(), key))
    for words, key in SYNONYMS.items():
        match = re.search(rf"\b{re.escape(words)}", message, re.IGNORECASE)
        if match and key in keys:
            found.append((match.start(), key))
    return min(found)[1] if found else None


def refusal(err: BaseException, prefix: str, settings: dict[str, Any], what: str) -> ConfigError:
    """A ConfigError for an error a class raised while built from `settings` (its config keys under `prefix`):
    `prefix.key=value: message` when the message names one of them, else `what: message`."""
    message = message_of(err)
    flat = flatten(settings)
    key = _named_key(message, list(flat))
    zeros = [name for name, value in flat.items() if _number(value) and value == 0]
    if key is None and isinstance(err, ZeroDivisionError) and len(zeros) == 1:
        key = zeros[0]  # the one setting that is 0 divided
    if key is None:
        return ConfigError(f"{what}: {message}")
    return ConfigError(f"{prefix}{key}={flat[key]!r}: {message}")


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception `err` was raised from (jsonargparse wraps a constructor's error in its own)."""
    seen = {id(err)}
    while True:
        cause = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        if cause is None or id(cause) in seen:
            return err
        seen.add(id(cause))
        err = cause


def constructor_of(err: BaseException) -> tuple[str, object] | None:
    """Whose constructor raised `err`, as ("model" | "data" | "callback", the object): the outermost `__init__` of
    a model, data module or callback on the way."""
    for frame, _ in traceback.walk_tb(err.__traceback__):
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
        for component, base in (("model", LightningModule), ("data", LightningDataModule), ("callback", Callback)):
            if isinstance(owner, base):
                return component, owner
    return None


def build_error(err: BaseException, config: Any) -> ConfigError:
    """A ConfigError for an error raised while jsonargparse built the model, the data module or a callback."""
    root = root_cause(err)
    found = constructor_of(root)
    if found is None:
        return ConfigError(f"cannot build the config's classes: {message_of(err)}")
    component, owner = found
    if component == "callback":
        return ConfigError(f"trainer.callbacks {type(owner).__name__}: {message_of(root)}")
    settings = config.get(component)
    init_args = settings.get("init_args") if hasattr(settings, "get") else None
    return refusal(root, f"{component}.", init_args or {}, f"--{component} {type(owner).__name__}")


def setup_error(err: BaseException, ckpt_path: str | None) -> ConfigError | None:
    """A ConfigError for what Lightning or torch refused while a run was set up, before it started any work (see
    `ReleaseAtStart`): a checkpoint that could not be loaded into the run, or a value Lightning refused then; None for
    anything else (a crash keeps its traceback)."""
    if config_error_in(err) is not None:
        return None
    root = root_cause(err)
    frames = [frame.f_code for frame, _ in traceback.walk_tb(root.__traceback__)]
    loading = any("checkpoint" in code.co_filename or code.co_name.startswith("load_state_dict") for code in frames)
    if ckpt_path and loading and isinstance(root, (*REFUSALS, RuntimeError)):
        return ConfigError(f"--ckpt_path {ckpt_path}: cannot be loaded into this run ({message_of(root)})")
    if isinstance(root, (ValueError, MisconfigurationException)):
        return ConfigError(f"the run cannot start: {message_of(root)}")
    return None


def check_optimizer(model: LightningModule, optimizer_init: Any, scheduler_init: Any) -> None:
    """Build the config's optimizer on the model's parameters and its scheduler on that optimizer once, as
    `configure_optimizers` will, so that a value they refuse is one line before anything runs."""
    if not optimizer_init:
        return
    name = optimizer_init["class_path"].rsplit(".", 1)[-1]
    try:
        optimizer = instantiate_class(model.parameters(), optimizer_init)
    except REFUSALS as err:
        raise refusal(err, "optimizer.init_args.", optimizer_init.get("init_args"), f"--optimizer {name}") from None
    if not scheduler_init:
        return
    name = scheduler_init["class_path"].rsplit(".", 1)[-1]
    try:
        scheduler = instantiate_class(optimizer, scheduler_init)
        if not isinstance(scheduler, ReduceLROnPlateau):  # its step needs a metric
            with warnings.catch_warnings():  # "step() before optimizer.step()": this optimizer never steps
                warnings.simplefilter("ignore")
                scheduler.step()  # a value refused only when the schedule is computed (StepLR step_size 0)
    except (*REFUSALS, ArithmeticError) as err:
        raise refusal(
            err, "lr_scheduler.init_args.", scheduler_init.get("init_args"), f"--lr_scheduler {name}"
        ) from None


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
        if not save_dir:
            continue
        key = f"trainer.logger.init_args.save_dir={save_dir}"
        existing = Path(save_dir).absolute()
        while not existing.exists() and existing != existing.parent:
            if existing.is_symlink():  # a link to nothing: no folder can be made through it
                raise ConfigError(f"{key}: {existing} is a link to {os.readlink(existing)}, which does not exist")
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"{key}: {existing} is a file, not a folder; give a folder for the logs")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: {existing} is not writable; give a folder you can write in")
        try:  # what os.access cannot tell: a read-only file system, or a folder that refuses even root
            os.rmdir(tempfile.mkdtemp(prefix=".nlparena-", dir=existing))
        except OSError as err:
            raise ConfigError(f"{key}: cannot write in {existing} ({err.strerror}); give another folder") from None
