"""Lightning's cost over a plain PyTorch loop, and the share of a step spent fetching data.

Same model, data, optimizer and batches (the quick-start config); the plain loop and Lightning's
`fit` run in alternating rounds in this process, so machine noise hits both alike. Prints medians.
A third side, bare Lightning (a `training_step` of forward and loss only, no logger, no callbacks but
the clock), shows what Lightning's own loop costs before any logging of ours.

    python benchmarks/lightning_overhead.py [--steps 150] [--rounds 3] [--config configs/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import types

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from nlparena.callbacks import NonFiniteGuard, StepLearningRateMonitor
from nlparena.cli import NlpArenaCLI
from nlparena.networks.layers import shift_right


class StepClock(Callback):
    """Wall time between the starts of consecutive training batches (data fetch + step + hooks + logging)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())


def plain_loop(model: pl.LightningModule, loader, steps: int, lr: float) -> tuple[list[float], list[float]]:
    """Per-step wall times and per-step data-fetch times of a hand-written loop."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    step_times, fetch_times, it = [], [], iter(loader)
    for _ in range(steps):
        start = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        fetched = time.perf_counter()
        logits = model.net(batch["src"], shift_right(batch["tgt"]))
        loss = model.loss(logits, batch["tgt"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        end = time.perf_counter()
        step_times.append(end - start)
        fetch_times.append(fetched - start)
    return step_times, fetch_times


def timed_fit(model: pl.LightningModule, datamodule, steps: int, lr: float, **trainer_args) -> list[float]:
    """Per-step wall times of `Trainer.fit` for `steps` steps with AdamW at `lr`, no validation or checkpoints;
    `trainer_args` add the logging of the side measured (its callbacks go after the clock)."""
    clock = StepClock()
    model.configure_optimizers = lambda: torch.optim.AdamW(model.parameters(), lr=lr)
    callbacks = [clock, *trainer_args.pop("callbacks", [])]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + 1,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_args,
    )
    trainer.fit(model, datamodule=datamodule)
    return [b - a for a, b in zip(clock.starts, clock.starts[1:], strict=False)]


def lightning_fit(model: pl.LightningModule, datamodule, steps: int, lr: float, log_dir: str) -> list[float]:
    """Per-step wall times of `Trainer.fit` with the quick start's logging (TensorBoard, the lr of every step) and
    its non-finite loss guard."""
    return timed_fit(
        model,
        datamodule,
        steps,
        lr,
        logger=TensorBoardLogger(log_dir, name="bench"),
        log_every_n_steps=20,
        # as `nlparena fit` has them: the lr of every step, the stop at a non-finite loss (checked every step), the
        # progress bar redrawn every 20 steps
        callbacks=[StepLearningRateMonitor(), NonFiniteGuard(), TQDMProgressBar(refresh_rate=20)],
    )


def bare_training_step(self: pl.LightningModule, batch: dict, batch_idx: int) -> torch.Tensor:
    """What the plain loop computes in its step: forward and loss."""
    return self.loss(self.net(batch["src"], shift_right(batch["tgt"])), batch["tgt"])


def bare_lightning_fit(model: pl.LightningModule, datamodule, steps: int, lr: float) -> list[float]:
    """Per-step wall times of `Trainer.fit` with nothing of ours: no metrics, logger, progress bar or callbacks."""
    model.training_step = types.MethodType(bare_training_step, model)
    return timed_fit(model, datamodule, steps, lr, logger=False, enable_progress_bar=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10, help="steps dropped at the start of each measurement")
    args = parser.parse_args()

    cli = NlpArenaCLI(args=["-c", args.config, "--trainer.logger=false"], run=False)
    datamodule, initial = cli.datamodule, cli.model
    datamodule.setup("fit")
    lr = cli.config.optimizer.init_args.lr
    plain_steps, plain_fetch, lightning_steps, bare_steps = [], [], [], []
    with tempfile.TemporaryDirectory() as log_dir:

        def plain() -> None:
            steps, fetch = plain_loop(copy.deepcopy(initial), datamodule.train_dataloader(), args.steps, lr)
            plain_steps.extend(steps[args.warmup :])
            plain_fetch.extend(fetch[args.warmup :])

        def lightning() -> None:
            steps = lightning_fit(copy.deepcopy(initial), datamodule, args.steps, lr, log_dir)
            lightning_steps.extend(steps[args.warmup :])

        def bare() -> None:
            bare_steps.extend(bare_lightning_fit(copy.deepcopy(initial), datamodule, args.steps, lr)[args.warmup :])

        sides = [plain, lightning, bare]
        for round_ in range(args.rounds):
            for side in sides[round_ % 3 :] + sides[: round_ % 3]:  # each side takes each place in the order alike
                side()

    plain, light, bare, fetch = (statistics.median(x) for x in (plain_steps, lightning_steps, bare_steps, plain_fetch))
    print(f"\nconfig {args.config}, {args.rounds} rounds x {args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"plain PyTorch loop step   median {plain * 1e3:7.2f} ms")
    print(f"Lightning fit step        median {light * 1e3:7.2f} ms")
    print(f"bare Lightning fit step   median {bare * 1e3:7.2f} ms")
    print(f"data fetch per step       median {fetch * 1e3:7.3f} ms")
    print(f"(a) data fetch / step time          {fetch / plain:6.2%}")
    print(f"(b) Lightning step / plain step     {light / plain:6.3f}")
    print(f"(c) bare Lightning / plain step     {bare / plain:6.3f}")


if __name__ == "__main__":
    main()
