"""The private names of other libraries that nlparena/internals.py reads still exist and mean what it says: a new
Lightning release that renames or redefines one fails here, by name, instead of somewhere in a run."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.demos.boring_classes import BoringModel

from nlparena.internals import logging_step


class RecordedSteps(pl.loggers.CSVLogger):
    """The steps Lightning writes `self.log` values at."""

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.steps: list[int] = []

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.steps.append(step)


class LogsAndRecords(BoringModel):
    """Logs a value each step and records `logging_step` there and at each validation's end."""

    def __init__(self) -> None:
        super().__init__()
        self.training_steps: list[int] = []
        self.validation_steps: list[int] = []

    def training_step(self, batch, batch_idx):
        self.log("value", 1.0)
        self.training_steps.append(logging_step(self.trainer))
        return super().training_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self.log("val_value", 2.0)
        if not self.trainer.sanity_checking:
            self.validation_steps.append(logging_step(self.trainer))


def test_logging_step_is_the_step_lightning_writes_logged_values_at(tmp_path):
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=1,
        log_every_n_steps=1,
        logger=RecordedSteps(str(tmp_path)),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    assert logging_step(trainer) == 0  # a fresh Trainer, or one that only tests
    model = LogsAndRecords()
    trainer.fit(model)
    assert model.training_steps == [0, 1, 2, 3, 4, 5]
    assert model.validation_steps == [2, 5]  # the epoch's last step, while `global_step` counts one more
    assert set(trainer.logger.steps) == {0, 1, 2, 3, 4, 5}
    assert logging_step(trainer) == trainer.global_step == 6
