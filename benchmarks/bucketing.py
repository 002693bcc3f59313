"""Padding and training speed with and without length-bucketed batches (`data.bucket_window`).

For each config: the share of the tokens of a training epoch's batches that are padding, and the real (non-PAD)
tokens trained per second by `Trainer.fit` (forward, backward, AdamW, the model's own training step), with
`bucket_window` 0 (rows batched as they come) and the default, alternated in rounds in this process. Prints medians.

    python benchmarks/bucketing.py [--steps 100] [--rounds 3] [--window 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from nlparena.cli import NlpArenaCLI
from nlparena.data.vocab import PAD

CONFIGS = ("configs/quickstart.yaml", "configs/translation/language_pair.yaml", "configs/pretraining/bert.yaml")


class TokenClock(Callback):
    """Real tokens and wall time of the training batches after the first `skip`."""

    def __init__(self, refs: list[str], skip: int) -> None:
        self.refs, self.skip = refs, skip
        self.tokens, self.start, self.end = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.skip:
            self.start = time.perf_counter()
        if trainer.global_step >= self.skip:
            self.tokens += sum(int((batch[ref] != PAD).sum()) for ref in self.refs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def build(config: str, window: int) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    cli = NlpArenaCLI(args=["-c", config, f"--data.bucket_window={window}", "--trainer.logger=false"], run=False)
    cli.datamodule.setup("fit")
    return cli.model, cli.datamodule


def padded_fraction(datamodule: pl.LightningDataModule) -> float:
    """PAD entries / all entries of the width-setting tensors over one training epoch's batches."""
    refs = sorted(set(datamodule.trim.values()))
    pads = total = 0
    for batch in datamodule.train_dataloader():
        for ref in refs:
            pads += int((batch[ref] == PAD).sum())
            total += batch[ref].numel()
    return pads / total


def tokens_per_second(config: str, window: int, steps: int, skip: int = 10) -> float:
    model, datamodule = build(config, window)
    clock = TokenClock(sorted(set(datamodule.trim.values())), skip)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + skip,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        logger=False,
        callbacks=[clock],
    )
    trainer.fit(model, datamodule=datamodule)
    return clock.tokens / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=50, help="the bucketed side's data.bucket_window")
    args = parser.parse_args()

    rows = []
    for config in args.configs:
        windows = (0, args.window)
        padding = {w: padded_fraction(build(config, w)[1]) for w in windows}
        speed: dict[int, list[float]] = {w: [] for w in windows}
        for _ in range(args.rounds):
            for w in windows:
                speed[w].append(tokens_per_second(config, w, args.steps))
        medians = {w: statistics.median(speed[w]) for w in windows}
        rows.append((config, padding, medians))

    print(f"\n{args.rounds} rounds x {args.steps} steps, torch threads {torch.get_num_threads()}")
    header = ("padded", "bucketed pad", "tok/s", "bucketed", "speed-up")
    print(f"{'config':42s} " + " ".join(f"{h:>11s}" for h in header))
    for config, padding, medians in rows:
        off, on = 0, args.window
        print(
            f"{config:42s} {padding[off]:11.1%} {padding[on]:11.1%} {medians[off]:11.0f} {medians[on]:11.0f} "
            f"{medians[on] / medians[off]:11.2f}"
        )


if __name__ == "__main__":
    main()
