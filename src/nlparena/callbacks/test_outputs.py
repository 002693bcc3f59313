"""Every test example's source, reference, output and whether it is right, as `test_outputs.csv` in the run folder:
what a user reads to see where a model fails, and what `nlparena compare` resamples to tell a real gap from noise
(the paired bootstrap over test examples)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback

FILE_NAME = "test_outputs.csv"
COLUMNS = ("index", "source", "reference", "output", "correct")


class TestOutputs(Callback):
    """Writes `test_outputs.csv` (index in the test split, source, reference, output, correct 0/1) at the end of
    each test, from what the model's `test_step` returns: a dict of per-example lists `source`, `reference`,
    `output`, `correct` (translation: the decoded sentence; classification: the predicted class name). A model whose
    test step returns nothing of the kind (pre-training) gets no file.

    Under DDP each process holds its share of the split (every world-size-th example, unpadded, see
    `ShardedBatches`); the rows are gathered to process 0 and written in the split's order, so 1 and N processes
    write the same file.
    """

    __test__ = False  # a callback, not a pytest test class

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, int]] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, dict) and "output" in outputs:
            columns = [outputs[key] for key in COLUMNS[1:]]
            self.rows += [(s, r, o, int(c)) for s, r, o, c in zip(*columns, strict=True)]

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        indexed = list(zip(self._indices(trainer), self.rows, strict=False))
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            shares: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(shares, indexed)  # every process takes part, or the others wait forever
            indexed = [row for share in shares for row in share]
        log_dir = trainer.log_dir
        if not indexed or not trainer.is_global_zero or log_dir is None:
            return
        path = Path(log_dir, FILE_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows((index, *row) for index, row in sorted(indexed, key=lambda item: item[0]))

    def _indices(self, trainer: pl.Trainer) -> list[int]:
        """Each of this process's rows' position in the test split."""
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        share = getattr(getattr(loader, "sampler", None), "unpadded_share", None)
        indices = list(share()) if callable(share) else []
        if len(indices) != len(self.rows):  # another sampler: the order it yielded, on one process
            indices = list(range(len(self.rows)))
        return indices
