"""Stop training at the first non-finite loss or gradient norm, and never write a checkpoint with a non-finite
weight."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.precision import Precision

from nlparena.errors import TrainingDiverged
from nlparena.models.base import non_finite_tensors


class NonFiniteGuard(Callback):
    """Ends `fit` with one line (`TrainingDiverged`, exit status 1) at the first non-finite training loss, naming the
    step, the value and the likely cause; on by default in `nlparena fit`.

    The loss is checked before its backward pass, so the optimizer never steps on it: the weights stay those of the
    step before, and neither validation nor a checkpoint runs after it. With `trainer.gradient_clip_val` (by norm)
    the gradient norm that clipping computes is checked too, before the optimizer step. A checkpoint whose weights
    are non-finite anyway (a finite loss whose gradients overflowed, without clipping) is refused before it is
    written.

    Cost: `torch.isfinite` of the loss, read on the host, once per micro-batch: on CPU a few microseconds (the loss
    is already in host memory); on a GPU it waits for the forward pass to finish (one device sync per step, which
    Lightning otherwise avoids between logging steps). Under DDP one all-reduce of a flag per step, so that every
    process stops at the same step. The weights are checked once per checkpoint.
    """

    def __init__(self) -> None:
        self._clipping: Precision | None = None

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._check(trainer, "train loss", loss.detach())

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Read the gradient norm that clipping by norm computes (Lightning's plain precision plugins drop it)."""
        plugin = trainer.precision_plugin
        own_clipping = type(plugin).clip_grad_by_norm is Precision.clip_grad_by_norm
        # With a GradScaler (16-mixed), an inf gradient norm is expected: the scaler skips that step.
        if stage != "fit" or not own_clipping or getattr(plugin, "scaler", None) is not None:
            return

        def clip_grad_by_norm(optimizer: torch.optim.Optimizer, clip_val: float) -> None:
            norm = torch.nn.utils.clip_grad_norm_(plugin.main_params(optimizer), clip_val)
            self._check(trainer, "gradient norm", norm)

        plugin.clip_grad_by_norm = clip_grad_by_norm
        self._clipping = plugin

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._clipping is not None:
            vars(self._clipping).pop("clip_grad_by_norm", None)  # the class's method again
            self._clipping = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "fit")  # Lightning skips `teardown` after an error

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise TrainingDiverged(
                f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): weights are "
                f"non-finite ({bad[0]}{more}), no checkpoint written; likely cause: {likely_cause(trainer)}"
            )

    def _check(self, trainer: pl.Trainer, what: str, value: torch.Tensor) -> None:
        # the device sync on a GPU; a scalar is read as a Python float (a tenth of `isfinite(...).all()`'s cost on CPU)
        local = math.isfinite(value.item()) if value.numel() == 1 else bool(torch.isfinite(value).all())
        # every process stops at the same step, or the others would wait for this one forever
        finite = local if trainer.world_size == 1 else trainer.strategy.reduce_boolean_decision(local, all=True)
        if finite:
            return
        shown = "non-finite on another process" if local else f"{value.item():.6g}"
        raise TrainingDiverged(
            f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): {what} is {shown}; "
            f"no checkpoint of this step written; likely cause: {likely_cause(trainer)}"
        )


def likely_cause(trainer: pl.Trainer) -> str:
    """What most often makes a loss non-finite, given the step and the Trainer's settings."""
    precision = str(trainer.precision)
    if trainer.global_step == 0:
        return "the model or the data (non-finite before any optimizer step); check the inputs and the model's sizes"
    if precision.startswith("16"):
        return f"float16 overflow (trainer.precision {precision}); use bf16-mixed or 32-true, or lower the lr"
    lrs = sorted({group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups})
    shown = ", ".join(map(str, lrs))
    clip = "" if trainer.gradient_clip_val else ", or set trainer.gradient_clip_val"
    return f"lr too high (optimizer lr {shown}); lower optimizer.init_args.lr or add a Warmup{clip}"
