"""Learning-rate warmup and the linear scaling rule, as callbacks that compose with any optimizer and any
torch scheduler.

The schedule formulas are pure functions of the optimizer step (tested against their closed forms). The
callbacks (`LRFactor`) multiply the learning rate the scheduler has set by their factor for one optimizer step
and put the scheduler's value back right after the step (an optimizer step hook), so a scheduler that
updates its lr from the previous one (StepLR, ExponentialLR, ...) never sees the multiplied value, and no
scheduler's internal state (base_lrs, OneCycleLR's max_lr, ...) is touched. The factors depend only on
`trainer.global_step` and the Trainer's settings, which a resumed run has again: a run resumed mid-warmup
continues the same curve and a scaled lr is never scaled twice.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.fabric.utilities.data import sized_len
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from nlparena.errors import ConfigError

WarmupMode = Literal["linear", "constant", "exponential"]


def linear_warmup(step: int, warmup_steps: int, start_factor: float) -> float:
    """Goyal et al.'s gradual warmup: from start_factor at step 0 up to 1 at `warmup_steps`, then 1."""
    if step >= warmup_steps:
        return 1.0
    return start_factor + (1.0 - start_factor) * step / warmup_steps


def constant_warmup(step: int, warmup_steps: int, start_factor: float) -> float:
    """Goyal et al.'s constant warmup: start_factor for `warmup_steps` steps, then 1."""
    return start_factor if step < warmup_steps else 1.0


def exponential_warmup(step: int, warmup_steps: int, start_factor: float) -> float:
    """Geometric growth from start_factor to 1 over `warmup_steps` steps, then 1."""
    if step >= warmup_steps:
        return 1.0
    return start_factor ** (1.0 - step / warmup_steps)


WARMUPS = {"linear": linear_warmup, "constant": constant_warmup, "exponential": exponential_warmup}


def noam(step: int, d_model: int, warmup_steps: int) -> float:
    """Vaswani et al.'s rate d_model^-0.5 * min(n^-0.5, n * warmup^-1.5) for optimizer step n = step + 1."""
    n = step + 1
    return d_model**-0.5 * min(n**-0.5, n * warmup_steps**-1.5)


def inverse_sqrt(step: int, warmup_steps: int) -> float:
    """Factor of fairseq's inverse_sqrt: linear from 1/warmup to 1 over warmup, then sqrt(warmup / n)."""
    n = step + 1
    return min(n / warmup_steps, math.sqrt(warmup_steps / n))


class Noam(LambdaLR):
    """The Noam schedule as a torch scheduler (step it per optimizer step): lr = base_lr * noam(step).

    With the optimizer's lr at 1 (Vaswani et al.) the rate is exactly `noam`; `--lr_scheduler
    nlparena.callbacks.warmup.Noam --lr_scheduler.d_model 128 --lr_scheduler.warmup_steps 4000`.
    """

    def __init__(self, optimizer: Optimizer, d_model: int, warmup_steps: int, last_epoch: int = -1) -> None:
        if d_model < 1 or warmup_steps < 1:
            raise ConfigError(f"Noam: d_model={d_model}, warmup_steps={warmup_steps}: both must be at least 1")
        super().__init__(optimizer, lambda step: noam(step, d_model, warmup_steps), last_epoch)


class InverseSqrt(LambdaLR):
    """fairseq's inverse square root schedule as a torch scheduler (step it per optimizer step)."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, last_epoch: int = -1) -> None:
        if warmup_steps < 1:
            raise ConfigError(f"InverseSqrt: warmup_steps={warmup_steps}: must be at least 1")
        super().__init__(optimizer, lambda step: inverse_sqrt(step, warmup_steps), last_epoch)


class LRFactor(Callback):
    """Base of the callbacks that multiply the scheduled learning rate by `factor(trainer)` at every step.

    Several compose: the lr of a step is the scheduler's lr times the product of their factors. Applied at
    batch start, so that a LearningRateMonitor listed after them (LightningCLI puts the config's callbacks
    first) logs the lr the step is taken with; with gradient accumulation every micro-batch of one optimizer
    step sees the same factor.
    """

    def factor(self, trainer: pl.Trainer) -> float:
        raise NotImplementedError

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Undo the factors right after each optimizer step: Lightning steps the schedulers before any callback
        # hook runs again, and they must continue from their own value.
        self._hooks = [optimizer.register_step_post_hook(self._restore) for optimizer in trainer.optimizers]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in getattr(self, "_hooks", []):
            hook.remove()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        factor = self.factor(trainer)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("scheduled_lr", group["lr"])
                factors = group.setdefault("lr_factors", {})
                factors[self.state_key] = factor
                group["lr"] = group["scheduled_lr"] * math.prod(factors.values())

    @staticmethod
    def _restore(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        for group in optimizer.param_groups:
            if "scheduled_lr" in group:
                group["lr"] = group.pop("scheduled_lr")
                group.pop("lr_factors", None)


class Warmup(LRFactor):
    """Warm the learning rate up over the first optimizer steps, on top of whatever scheduler the config has.

    Args:
        steps: warmup length in optimizer steps (after gradient accumulation); or
        epochs: warmup length in epochs (converted with the number of optimizer steps per epoch).
        mode: "linear" (gradual), "constant" or "exponential".
        start_factor: the first step's fraction of the scheduled lr. Goyal et al. start the k-times-batch run at
            the small-batch lr, i.e. start_factor = 1 / k; transformers' warmup starts from 0, a step that does
            nothing, so 0 is refused: a small factor such as 1 / steps comes close.
    """

    def __init__(
        self,
        steps: int | None = None,
        epochs: float | None = None,
        mode: WarmupMode = "linear",
        start_factor: float = 0.1,
    ) -> None:
        if (steps is None) == (epochs is None):
            raise ConfigError("Warmup: give exactly one of steps and epochs")
        if (steps is not None and steps < 1) or (epochs is not None and epochs <= 0):
            raise ConfigError(f"Warmup: steps={steps}, epochs={epochs}: the warmup length must be positive")
        if mode not in WARMUPS:
            raise ConfigError(f"Warmup: mode={mode!r}: choose one of {sorted(WARMUPS)}")
        if not 0.0 < start_factor <= 1.0:
            raise ConfigError(f"Warmup: start_factor={start_factor}: must be in (0, 1]")
        self.steps, self.epochs, self.mode, self.start_factor = steps, epochs, mode, start_factor
        self.warmup_steps = steps or 0

    def factor(self, trainer: pl.Trainer) -> float:
        return WARMUPS[self.mode](trainer.global_step, self.warmup_steps, self.start_factor)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Convert epochs to optimizer steps and check the warmup fits in the run, before the first step."""
        if self.epochs is not None:
            per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
            self.warmup_steps = max(1, round(self.epochs * per_epoch))
        total = trainer.estimated_stepping_batches
        if math.isfinite(total) and self.warmup_steps > total:
            planned = self.planned_steps(trainer)
            if planned is not None and self.warmup_steps > planned:
                raise ConfigError(
                    f"Warmup: {self.warmup_steps} warmup steps but the run has only {planned} optimizer steps"
                )
            rank_zero_info(
                f"Warmup: a short trial of {int(total)} optimizer steps (fast_dev_run, max_steps or a batch limit) "
                f"ends within the {self.warmup_steps} warmup steps: the warmup is cut short with it"
            )
        super().on_train_start(trainer, pl_module)

    def planned_steps(self, trainer: pl.Trainer) -> int | None:
        """The optimizer steps of the run the config plans: its epochs of whole epochs, or its max_steps when no
        epochs bound it; None for fast_dev_run or an endless run. fast_dev_run, and a max_steps or
        limit_train_batches that ends the run sooner, make a short trial of that run: its warmup is cut short."""
        if trainer.fast_dev_run:
            return None
        if trainer.max_epochs is None or trainer.max_epochs < 0:
            return None if trainer.max_steps < 0 else trainer.max_steps
        limited = trainer.num_training_batches
        if self.epochs is not None and self.epochs > trainer.max_epochs:  # counted in the epochs the warmup has
            return trainer.max_epochs * math.ceil(limited / trainer.accumulate_grad_batches)
        loader = trainer.train_dataloader
        batches = sized_len(loader) if isinstance(loader, DataLoader) else None  # without limit_train_batches
        batches = limited if batches is None else batches
        if not math.isfinite(batches):
            return None
        return max(trainer.max_epochs, 1) * math.ceil(batches / trainer.accumulate_grad_batches)

    def state_dict(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "mode": self.mode, "start_factor": self.start_factor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.warmup_steps = state_dict["warmup_steps"]


class LinearScaling(LRFactor):
    """Goyal et al.'s linear scaling rule: lr = scheduled lr × effective batch / reference_batch_size.

    The effective batch is read from the running Trainer: the data module's batch size (per process) × devices
    × nodes × accumulate_grad_batches, so moving a config from 1 GPU to 8, or to 2 nodes, keeps the lr per
    example. The factor multiplies whatever the scheduler sets (its eta_min / min_lr included) and is logged
    with the effective batch at fit start (`lr_scaling/*`). With `Warmup(start_factor=reference / effective)`
    the run starts at the small-batch lr, as Goyal et al.'s gradual warmup does.

    Args:
        reference_batch_size: the batch the config's lr was chosen for (Goyal et al.: 0.1 for 256 images).
    """

    power: float = 1.0  # lr ∝ (effective / reference) ** power

    def __init__(self, reference_batch_size: int = 256) -> None:
        if reference_batch_size < 1:
            raise ConfigError(f"LinearScaling: reference_batch_size={reference_batch_size}: must be at least 1")
        self.reference_batch_size = reference_batch_size
        self.scale = 1.0
        # (devices, nodes) to count instead of the Trainer's: `nlparena schedule` draws a multi-device config's
        # curve in one process.
        self.planned_devices: tuple[int, int] | None = None

    def batch_sizes(self, trainer: pl.Trainer) -> dict[str, int]:
        """The four factors of the effective batch, from the running Trainer."""
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if batch_size is None:
            batch_size = getattr(trainer.train_dataloader, "batch_size", None)
        if not isinstance(batch_size, int):
            raise ConfigError("LinearScaling: cannot tell the batch size; the data module needs a `batch_size`")
        devices, nodes = self.planned_devices or (trainer.num_devices, trainer.num_nodes)
        return {
            "batch_size": batch_size,
            "devices": devices,
            "num_nodes": nodes,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
        }

    def factor(self, trainer: pl.Trainer) -> float:
        return self.scale

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sizes = self.batch_sizes(trainer)
        effective = math.prod(sizes.values())
        self.scale = (effective / self.reference_batch_size) ** self.power
        lrs = [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
        factors = " × ".join(f"{value} {key}" for key, value in sizes.items())
        scaled = ", ".join(f"{lr:.4g} → {lr * self.scale:.4g}" for lr in lrs)
        ratio = f"{effective}/{self.reference_batch_size}" + ("" if self.power == 1 else f" ^ {self.power}")
        rank_zero_info(f"{type(self).__name__}: effective batch {effective} = {factors}; lr × {ratio}: {scaled}")
        metrics = {"lr_scaling/effective_batch_size": effective, "lr_scaling/factor": self.scale}
        metrics.update({f"lr_scaling/lr_{k}": lr * self.scale for k, lr in enumerate(lrs)})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        super().on_train_start(trainer, pl_module)


class SqrtScaling(LinearScaling):
    """The square-root scaling rule: lr = scheduled lr × sqrt(effective batch / reference_batch_size).

    Keeps the variance of the update per example constant (Krizhevsky 2014); the rule that suits Adam, whose step
    size does not grow with the gradient's signal-to-noise ratio as SGD's does (Malladi et al. 2022). Everything
    else as LinearScaling.
    """

    power = 0.5
