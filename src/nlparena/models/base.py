"""What every nlparena LightningModule shares: a task family, a headline metric and how it is checkpointed."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, ClassVar, Literal, TypeVar
from weakref import proxy

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import AttributeDict

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.internals import logging_step
from nlparena.models.metrics import RatioSums

Config = TypeVar("Config")
TRAINING_WINDOW = "training_window"  # the checkpoint's entry: the sums of `train_window` since the last log


def cut_positional_tables(state: dict[str, Any], size: int) -> list[str]:
    """Cut the learned positional tables of a state dict to `size` rows (rows beyond the data's lengths are
    never read); returns the keys of the tables that are shorter than `size`, which no cut can fit."""
    tables = [key for key in state if key.endswith("positions.table.weight")]  # LearnedPositions in layers.py
    for key in tables:
        state[key] = state[key][:size]
    return [key for key in tables if state[key].shape[0] < size]


def non_finite_tensors(state: Mapping[str, Any]) -> list[str]:
    """The keys of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    return [
        key
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def check_finite_weights(state: Mapping[str, Any], source: str) -> None:
    """ConfigError naming `source` (`--ckpt_path PATH`) if a weight of the checkpoint is NaN or infinite."""
    bad = non_finite_tensors(state)
    if bad:
        more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
        raise ConfigError(
            f"{source}: holds non-finite weights (NaN or inf in {bad[0]}{more}): it was saved by a run that diverged; "
            "use a checkpoint written before the divergence"
        )


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt`, rewritten after every epoch (after its validation, or at its end when there is none) and at the
    end of fit, whatever the monitored metric did.

    Lightning's `save_last=True` writes `last.ckpt` only beside a new top-k checkpoint: after epochs without a new
    best it kept an old epoch. This is a checkpoint with no monitor, which Lightning writes every epoch.
    """

    def __init__(self) -> None:
        super().__init__(filename=self.CHECKPOINT_NAME_LAST, monitor=None, save_top_k=1, enable_version_counter=False)
        self.saved_step = 0  # the global step of the last `last.ckpt` this fit wrote (none is needed before a step)
        self._saving = False  # inside one of ModelCheckpoint's hooks, whose checkpoints are this file

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if self._saving:
            self.saved_step = trainer.global_step

    @contextmanager
    def saving_this_file(self) -> Iterator[None]:
        """While ModelCheckpoint's own hook runs: a checkpoint saved then is `last.ckpt` (see `on_save_checkpoint`)."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self.saving_this_file():
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self.saving_this_file():
            super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A fit that stops mid-epoch (`max_steps`, `max_time`) still leaves its last step in `last.ckpt`."""
        if trainer.fast_dev_run or trainer.global_step == self.saved_step:
            return
        self.best_model_path = self.format_checkpoint_name({})
        trainer.save_checkpoint(self.best_model_path, self.save_weights_only)
        self.saved_step = trainer.global_step
        for logger in trainer.loggers:  # as ModelCheckpoint tells them of every checkpoint it writes
            logger.after_save_checkpoint(proxy(self))


def steps_the_optimizer(trainer: pl.Trainer) -> bool:
    """Whether this training batch ends with an optimizer step: the last of `accumulate_grad_batches` micro-batches,
    or the epoch's last batch (unless the strategy accumulates itself, as DeepSpeed does). Lightning's own rule."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    last = progress.current.ready == trainer.num_training_batches or progress.is_last_batch
    accumulated = progress.current.ready % trainer.accumulate_grad_batches == 0
    return accumulated or (last and not trainer.strategy.handles_gradient_accumulation)


def writes_logs_this_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes the values logged in this training step to the loggers: every `log_every_n_steps`
    optimizer steps, and when training is told to stop (every step with `fast_dev_run`), never in a micro-batch that
    only accumulates gradients. Lightning's rule (`update_train_step_metrics`), which it has no public API for."""
    if trainer.lightning_module.automatic_optimization and not steps_the_optimizer(trainer):
        return False
    if trainer.fast_dev_run:
        return True
    every = trainer.log_every_n_steps
    # the step about to be written: this batch's, counted before its optimizer step
    return every > 0 and ((logging_step(trainer) + 1) % every == 0 or trainer.should_stop)


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The Trainer running `module`, or None (`load_from_checkpoint`, a model built in Python)."""
    try:
        return module.trainer
    except RuntimeError:  # "... is not attached to a `Trainer`"
        return None


def network_config(config_class: type[Config], value: Config | dict[str, Any]) -> Config:
    """A network's config as given by the CLI (a dataclass) or read back from a checkpoint's hyperparameters (a
    dict: checkpoints keep plain values, so that they load with `weights_only=True`)."""
    return value if isinstance(value, config_class) else config_class(**value)


def flatten(params: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (or jsonargparse Namespaces) as dotted keys: {"transformer": {"d_model": 64}} ->
    {"transformer.d_model": 64}; None is no keys."""
    if hasattr(params, "as_dict"):
        params = params.as_dict()
    flat: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if hasattr(value, "as_dict"):
            value = value.as_dict()
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def plain_values(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """`hparams` with every dataclass (a network config) as a dict."""
    return {
        key: dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
        for key, value in hparams.items()
    }


class ArenaModel(pl.LightningModule):
    """Base of the models users pick with `--model`.

    `family` says which data modules it trains on (their `family` must match); `headline_metric` is what
    checkpoints keep the best of and what reports compare.

    Args:
        vocab_size: vocabulary size, set by the data module (linked by the CLI, never typed).
        max_len: longest sequence of any split (the positional table's size), set by the data module.
        pad_id: padding id, set by the data module.
        compile: run the network's forward through `torch.compile` (fused kernels; the first steps wait for the
            compilation). Decoding, which calls the network step by step, stays eager. Checkpoints are the same.
    """

    family: ClassVar[Literal["translation", "classification", "pretraining"]]
    headline_metric: ClassVar[str]
    # settings beside the network's sizes (`transformer.*`, `bert.*`, ...) that the trained weights depend on: a
    # checkpoint's value of them cannot be changed when it is loaded
    weight_settings: ClassVar[tuple[str, ...]] = ()
    headline_mode: ClassVar[Literal["min", "max"]] = "max"

    def __init__(self, vocab_size: int, max_len: int, pad_id: int = PAD, compile: bool = False) -> None:
        super().__init__()
        self.vocab_size, self.max_len, self.pad_id, self.compile_network = vocab_size, max_len, pad_id, compile
        self.network_compiled = False  # `configure_model` compiles once, whatever the number of fits and tests

    def log_training_window(self, window: RatioSums, pairs: list[torch.Tensor]) -> None:
        """Add this step's (numerator, denominator) `pairs` to `window`; when Lightning writes logs
        (`writes_logs_this_step`), log each ratio as `train/<name>` and reset it: a value covers the steps since the
        last write. In the steps between, the sums only accumulate on the device (no host sync)."""
        window.update(torch.stack(pairs).view(-1, 2))
        if not writes_logs_this_step(self.trainer):
            return
        for name, value in window.compute().items():
            self.log(f"train/{name}", value, prog_bar=name == "loss")
        window.reset()

    def compiled_modules(self) -> list[torch.nn.Module]:
        """The modules whose forward `compile` compiles: the network, by default."""
        return [self.net]

    def configure_model(self) -> None:
        """With `compile`, compile the forward of `compiled_modules` in place (`nn.Module.compile`): parameter names,
        and so checkpoints, stay those of the eager network. Lightning calls this before every fit, test, ..."""
        if self.compile_network and not self.network_compiled:
            for module in self.compiled_modules():
                module.compile()
            self.network_compiled = True

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: FrameType | None = None,
        logger: bool = True,
    ) -> None:
        """Lightning's, with network configs (dataclasses) kept as dicts: a checkpoint then holds only plain values,
        and `load_from_checkpoint` passes the dict back (see `network_config`)."""
        frame = frame or inspect.currentframe().f_back  # the caller's __init__, whose arguments are saved
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)
        self.hparams.update(plain_values(self.hparams))

    @property
    def hparams_initial(self) -> AttributeDict:
        """Lightning's (what the loggers write), with network configs as dicts as in `hparams`."""
        return AttributeDict(plain_values(super().hparams_initial))

    def logged_metrics(self) -> list[str]:
        """The metrics fitting logs (names, or fnmatch patterns for per-bucket and per-class ones): what an
        EarlyStopping, ModelCheckpoint or ReduceLROnPlateau `monitor` may name."""
        return [self.headline_metric]

    def checkpoint_callbacks(self) -> list[ModelCheckpoint]:
        """The best checkpoint by the headline metric and `last.ckpt` of every epoch. The best comes first: it is
        `trainer.checkpoint_callback`, which `ckpt_path="best"` reads. `nlparena fit` gives them to its Trainer."""
        best = ModelCheckpoint(
            monitor=self.headline_metric,
            mode=self.headline_mode,
            filename="best-epoch{epoch:03d}-step{step}",
            auto_insert_metric_name=False,
        )
        return [best, LastCheckpoint()]

    def configure_callbacks(self) -> list[Callback]:
        """`checkpoint_callbacks` in place of a Trainer's default ModelCheckpoint (a Trainer built in Python), none
        when the Trainer has no checkpointing or already has them (`nlparena fit`, a test after a fit)."""
        callbacks = self.trainer.callbacks
        if not self.trainer.checkpoint_callbacks or any(isinstance(cb, LastCheckpoint) for cb in callbacks):
            return []
        return self.checkpoint_callbacks()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint with non-finite weights (`fit --ckpt_path`, `test`, `validate`, `predict`); restore
        the training window's sums, so that the first log after a resume covers the steps before it too."""
        path = getattr(attached_trainer(self), "ckpt_path", None)
        check_finite_weights(checkpoint.get("state_dict", {}), f"--ckpt_path {path}" if path else "checkpoint")
        window, saved = getattr(self, "train_window", None), checkpoint.get(TRAINING_WINDOW)
        if isinstance(window, RatioSums) and saved is not None and saved.shape == window.sums.shape:
            # the sums of every process, on one process: `compute` adds them up across processes
            window.sums.copy_(saved if self.global_rank == 0 else torch.zeros_like(saved))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the token strings with the weights, and the tokenizer of text data (its JSON): `nlparena translate`
        reads and writes text with them, a run given these weights reads its text with that tokenizer, and
        fine-tuning from a checkpoint checks that the vocabularies match. Keep the sums of the training window
        since the last log (added up across processes: every process writes the checkpoint's content)."""
        vocab = getattr(self.trainer.datamodule, "vocab", None)
        if vocab is not None:
            checkpoint["vocabulary"] = vocab.tokens
            tokenizer = vocab.to_json()  # None for a synthetic task's vocabulary
            if tokenizer is not None:
                checkpoint["tokenizer"] = tokenizer
        window = getattr(self, "train_window", None)
        if isinstance(window, RatioSums):
            with window.sync_context():
                checkpoint[TRAINING_WINDOW] = window.sums.detach().cpu().clone()
