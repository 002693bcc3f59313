import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from nlparena.callbacks.warmup import (
    InverseSqrt,
    LinearScaling,
    Noam,
    SqrtScaling,
    Warmup,
    constant_warmup,
    exponential_warmup,
    inverse_sqrt,
    linear_warmup,
    noam,
)
from nlparena.errors import ConfigError
from tests.conftest import QUIET, scalars


def test_warmup_factors_equal_their_closed_forms():
    assert [linear_warmup(s, 4, 0.2) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert [constant_warmup(s, 3, 0.25) for s in range(5)] == [0.25, 0.25, 0.25, 1.0, 1.0]
    assert [exponential_warmup(s, 2, 0.01) for s in range(4)] == pytest.approx([0.01, 0.1, 1.0, 1.0])
    assert noam(0, 16, 4) == pytest.approx(16**-0.5 * 1 * 4**-1.5)  # rising: n * warmup^-1.5
    assert noam(8, 16, 4) == pytest.approx(16**-0.5 * 9**-0.5)  # falling: n^-0.5
    assert [inverse_sqrt(s, 4) for s in (0, 3, 15)] == pytest.approx([0.25, 1.0, 0.5])


class Regression(pl.LightningModule):
    """A one-layer model on fixed random data, with the scheduler a test gives it, stepped every optimizer step."""

    def __init__(self, scheduler: str) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.scheduler = scheduler

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g))
        return torch.utils.data.DataLoader(data, batch_size=4)  # 8 steps per epoch (the batch LinearScaling reads)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
        schedulers = {
            "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=16),
            "step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5),
            "noam": lambda: Noam(optimizer, d_model=16, warmup_steps=4),
            "inverse_sqrt": lambda: InverseSqrt(optimizer, warmup_steps=4),
        }
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedulers[self.scheduler](), "interval": "step"}}


class LrRecorder(pl.Callback):
    """The lr each optimizer step is taken with."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])


def fit(scheduler: str, callbacks: list, max_steps: int = 16, ckpt_path: str | None = None, **trainer_args) -> list:
    recorder = LrRecorder()
    trainer = pl.Trainer(
        max_steps=max_steps,
        callbacks=[*callbacks, recorder],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(Regression(scheduler), ckpt_path=ckpt_path)
    return recorder.lrs


def test_linear_warmup_then_cosine_gives_the_closed_form_lr_at_every_step():
    lrs = fit("cosine", [Warmup(steps=5, start_factor=0.1)])
    expected = [linear_warmup(k, 5, 0.1) * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(16)]
    assert lrs == pytest.approx(expected)


def test_constant_warmup_then_step_decay_gives_the_closed_form_lr_at_every_step():
    lrs = fit("step", [Warmup(steps=4, mode="constant", start_factor=0.25)])
    expected = [constant_warmup(k, 4, 0.25) * 0.5 ** (k // 3) for k in range(16)]
    assert lrs == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scheduler", "closed_form"), [("noam", lambda k: noam(k, 16, 4)), ("inverse_sqrt", lambda k: inverse_sqrt(k, 4))]
)
def test_noam_and_inverse_sqrt_schedulers_give_the_closed_form_lr_at_every_step(scheduler, closed_form):
    assert fit(scheduler, []) == pytest.approx([closed_form(k) for k in range(16)])


def test_warmup_in_epochs_counts_optimizer_steps_after_accumulation():
    lrs = fit("cosine", [Warmup(epochs=1, start_factor=0.05)], max_steps=8, accumulate_grad_batches=2)
    # 8 batches an epoch, 2 per optimizer step: warmup lasts 4 steps
    assert lrs[:5] == pytest.approx(
        [linear_warmup(k, 4, 0.05) * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(5)]
    )


class Interrupt(pl.Callback):
    """Save a checkpoint after optimizer step `at` and stop, as a crash would."""

    def __init__(self, at: int, path: str) -> None:
        self.at, self.path = at, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


def test_a_run_resumed_mid_warmup_gives_the_same_lr_sequence_as_an_uninterrupted_one(tmp_path):
    whole = fit("cosine", [Warmup(steps=8)], default_root_dir=tmp_path)
    ckpt = str(tmp_path / "step3.ckpt")
    first = fit("cosine", [Warmup(steps=8), Interrupt(3, ckpt)], default_root_dir=tmp_path)
    rest = fit("cosine", [Warmup(steps=8)], ckpt_path=ckpt, default_root_dir=tmp_path)
    assert len(first) == 3 and len(rest) == 13
    assert first + rest == pytest.approx(whole)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of steps and epochs"),
        ({"steps": 0}, "the warmup length must be positive"),
        ({"steps": 3, "mode": "cosine"}, "mode='cosine': choose one of"),
        ({"steps": 3, "start_factor": -0.5}, "start_factor=-0.5: must be in (0, 1]"),
        ({"steps": 3, "start_factor": 0.0}, "start_factor=0.0: must be in (0, 1]"),
        ({"epochs": -1.0}, "the warmup length must be positive"),
    ],
)
def test_bad_warmup_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Warmup(**kwargs)


def test_warmup_longer_than_the_run_is_refused_before_the_first_step():
    with pytest.raises(ConfigError, match="20 warmup steps but the run has only 16 optimizer steps"):
        fit("cosine", [Warmup(steps=20)])


@pytest.mark.parametrize(
    ("trial", "steps"),
    [
        ({"fast_dev_run": 2}, 2),
        ({"max_steps": 3, "max_epochs": 4}, 3),
        ({"max_steps": -1, "max_epochs": 2, "limit_train_batches": 2}, 4),
    ],
    ids=["fast_dev_run", "max_steps", "limit_train_batches"],
)
def test_a_short_trial_of_a_run_cuts_its_warmup_short_instead_of_refusing_it(trial, steps):
    # the planned run: 8 steps an epoch, 2 or 4 epochs (16 or 32 steps), longer than the 10 warmup steps
    lrs = fit("cosine", [Warmup(steps=10, start_factor=0.1)], **trial)
    expected = [linear_warmup(k, 10, 0.1) * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(steps)]
    assert lrs == pytest.approx(expected)  # the first steps of the planned run's curve


def test_a_warmup_longer_than_the_epochs_of_the_run_is_refused_in_a_short_trial_too():
    with pytest.raises(ConfigError, match="40 warmup steps but the run has only 32 optimizer steps"):
        fit("cosine", [Warmup(steps=40)], max_steps=3, max_epochs=4)
    with pytest.raises(ConfigError, match="16 warmup steps but the run has only 8 optimizer steps"):
        fit("cosine", [Warmup(epochs=2)], max_steps=3, max_epochs=1)


def test_linear_scaling_multiplies_the_scheduled_lr_by_effective_over_reference_batch():
    # batch 4 × 1 device × 1 node × 2 accumulated = 8 = 4 × the reference batch of 2
    lrs = fit("cosine", [LinearScaling(reference_batch_size=2)], max_steps=8, accumulate_grad_batches=2)
    assert lrs == pytest.approx([4 * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(8)])


def test_sqrt_scaling_multiplies_the_scheduled_lr_by_the_root_of_effective_over_reference_batch():
    lrs = fit("cosine", [SqrtScaling(reference_batch_size=2)], max_steps=8, accumulate_grad_batches=4)
    # 4 × 4 = 16 = 8 × the reference 2: sqrt(8) × the cosine
    assert lrs == pytest.approx([math.sqrt(8) * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(8)])


def test_gradual_warmup_from_the_small_batch_lr_up_to_the_scaled_lr():
    # Goyal et al.: the k-times batch starts at the small-batch lr (start_factor 1/k) and climbs to k × lr
    callbacks = [LinearScaling(reference_batch_size=1), Warmup(steps=6, start_factor=0.25)]
    lrs = fit("step", callbacks)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs == pytest.approx([4 * linear_warmup(k, 6, 0.25) * 0.5 ** (k // 3) for k in range(16)])


def test_a_scaled_run_resumed_mid_warmup_is_not_scaled_twice(tmp_path):
    def callbacks() -> list:
        return [LinearScaling(reference_batch_size=2), Warmup(steps=8)]

    whole = fit("cosine", callbacks(), default_root_dir=tmp_path)
    ckpt = str(tmp_path / "step5.ckpt")
    first = fit("cosine", [*callbacks(), Interrupt(5, ckpt)], default_root_dir=tmp_path)
    rest = fit("cosine", callbacks(), ckpt_path=ckpt, default_root_dir=tmp_path)
    assert first + rest == pytest.approx(whole)
    assert whole == pytest.approx(
        [2 * linear_warmup(k, 8, 0.1) * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(16)]
    )


def test_a_zero_or_negative_reference_batch_is_refused():
    with pytest.raises(ConfigError, match="reference_batch_size=0: must be at least 1"):
        LinearScaling(reference_batch_size=0)


@pytest.mark.slow
def test_two_process_ddp_counts_devices_and_accumulation_in_the_effective_batch():
    tiny = [
        "--model=Transformer",
        "--model.transformer.d_model=16",
        "--model.transformer.n_heads=2",
        "--model.transformer.d_ff=24",
    ]
    data = ["--data=Copy", "--data.train_size=96", "--data.val_size=8", "--data.test_size=8", "--data.batch_size=4"]
    scaling = ["--trainer.callbacks+=LinearScaling", "--trainer.callbacks.reference_batch_size=8"]
    trainer = ["--trainer.accelerator=cpu", "--trainer.max_steps=4", "--trainer.log_every_n_steps=1", *QUIET]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for devices in (1, 2):
        command = ["fit", *tiny, *data, *scaling, *trainer, f"--trainer.devices={devices}", "--optimizer.lr=0.01"]
        command += ["--trainer.accumulate_grad_batches=3", f"--trainer.logger.init_args.version=d{devices}"]
        if devices == 2:
            command.append("--trainer.strategy=ddp")  # gloo on CPU; Lightning launches the second process
        subprocess.run([sys.executable, "-m", "nlparena", *command], check=True, env=env, timeout=300)
    one, two = (scalars(Path(f"logs/Copy/Transformer/d{devices}")) for devices in (1, 2))
    # 4 per process × 3 accumulated = 12 on one device, 24 on two: lr 0.01 × 12/8 and × 24/8
    assert one["lr_scaling/effective_batch_size"] == [(0, 12.0)]
    assert two["lr_scaling/effective_batch_size"] == [(0, 24.0)]
    assert one["lr-AdamW"][0][1] == pytest.approx(0.015)
    assert two["lr-AdamW"][0][1] == pytest.approx(0.03)
