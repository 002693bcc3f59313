"""What a run says of itself: the model summary at the start of a fit (the network's modules), the lines that end a
`fit` (where it went, its best validation value and checkpoint, the commands to use it) and a `test` (which run it
tested, where its logs went)."""

from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import model_summary
from torch import nn
from torchmetrics import Metric, MetricCollection

# the logger Lightning's ModelSummary writes to: the summary is printed where, and when, Lightning's would be
SUMMARY_LOG = logging.getLogger("lightning.pytorch.callbacks.model_summary")
TESTED_FILE = "tested_checkpoint.txt"  # in a test's log folder: the checkpoint it tested and that checkpoint's run


def holds_metrics(module: nn.Module) -> bool:
    """A module with no parameters that holds torchmetrics states (`train_window`, `val_metrics`): the metrics'
    bookkeeping, no part of the network."""
    if any(True for _ in module.parameters()):
        return False
    return any(isinstance(sub, (Metric, MetricCollection)) for sub in module.modules())


class NetworkModules(model_summary.ModelSummary):
    """Lightning's summary of a LightningModule, without the modules that only hold metrics."""

    @property
    def named_modules(self) -> list[tuple[str, nn.Module]]:
        listed = super().named_modules  # the top-level modules, and with max_depth > 1 those inside them
        hidden = {name for name, module in listed if "." not in name and holds_metrics(module)}
        return [(name, module) for name, module in listed if name.split(".", 1)[0] not in hidden]

    @property
    def total_training_modes(self) -> dict[str, int]:
        shown = {id(sub): sub for name, module in self.named_modules if "." not in name for sub in module.modules()}
        modes = [module.training for module in shown.values()]
        return {"train": modes.count(True), "eval": modes.count(False)}


class NetworkSummary(Callback):
    """Lightning's model summary at the start of a fit (a table of modules, parameter counts, size), listing the
    network's modules only and without the FLOPs column and total: nlparena models give no example input, so
    Lightning's FLOPs are always 0."""

    def __init__(self, max_depth: int = 1) -> None:
        self.max_depth = max_depth

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        summary = NetworkModules(pl_module, max_depth=self.max_depth)
        columns = [
            (" ", [str(n) for n in range(len(summary.layer_names))]),
            ("Name", summary.layer_names),
            ("Type", summary.layer_types),
            ("Params", [model_summary.get_human_readable_count(n) for n in summary.param_nums]),
            ("Mode", ["train" if mode else "eval" for mode in summary.training_modes]),
        ]
        widths = [max(len(header), *(len(cell) for cell in cells)) for header, cells in columns]
        rows = [[header for header, _ in columns], *zip(*(cells for _, cells in columns), strict=True)]
        table = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        rule = "-" * (sum(widths) + 3 * len(widths))
        trainable, total = summary.trainable_parameters, summary.total_parameters
        modes = summary.total_training_modes
        totals = [
            (model_summary.get_human_readable_count(trainable), "Trainable params"),
            (model_summary.get_human_readable_count(total - trainable), "Non-trainable params"),
            (model_summary.get_human_readable_count(total), "Total params"),
            (model_summary.get_formatted_model_size(summary.model_size), "Total estimated model params size (MB)"),
            (str(modes["train"]), "Modules in train mode"),
            (str(modes["eval"]), "Modules in eval mode"),
        ]
        lines = [table[0], rule, *table[1:], rule, *(f"{value:<10}{what}" for value, what in totals)]
        SUMMARY_LOG.info("\n" + "\n".join(lines))


def shown_path(path: str | os.PathLike[str]) -> str:
    """`path` relative to the working folder when it is inside it (as the user typed `logs/...`), else absolute."""
    absolute = Path(path).absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def headline_checkpoint(trainer: pl.Trainer, metric: str) -> ModelCheckpoint | None:
    """The checkpoint callback that keeps the best value of `metric`."""
    return next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None) == metric), None)


def run_folder(trainer: pl.Trainer) -> str | None:
    """The folder the run logs to; None without a logger. The logger's own, not `trainer.log_dir`: that one is a
    collective (a broadcast from process 0) in DDP, and the summaries are written by process 0 alone."""
    if trainer.logger is None or trainer.fast_dev_run:
        return None
    return trainer.logger.log_dir or trainer.logger.save_dir


def fit_summary(trainer: pl.Trainer, model: pl.LightningModule) -> list[str]:
    """The lines that end a fit: its run folder, the best validation headline value with its epoch and checkpoint,
    and the commands that test (and translate) with that checkpoint (`last.ckpt` when no validation ran)."""
    folder = run_folder(trainer)
    lines = [f"run folder: {shown_path(folder)}"] if folder else []
    metric = getattr(model, "headline_metric", None)
    best = headline_checkpoint(trainer, metric) if metric else None
    checkpoint = None
    if best is not None and best.best_model_path and best.best_model_score is not None:
        checkpoint = shown_path(best.best_model_path)
        epoch = re.search(r"epoch(\d+)", Path(checkpoint).name)
        at = f" at epoch {int(epoch.group(1))}" if epoch else ""
        lines.append(f"best {metric}: {float(best.best_model_score):.4f}{at}, in {checkpoint}")
    else:
        last = [cb.last_model_path or cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.monitor is None]
        checkpoint = shown_path(last[0]) if last and last[0] else None
        if checkpoint is not None:
            lines.append(f"no {metric} was logged (no validation ran); the last weights are in {checkpoint}")
    if checkpoint is not None:
        ckpt = shlex.quote(checkpoint)
        lines.append(f"test it:      nlparena test --ckpt_path {ckpt}")
        if getattr(model, "family", None) == "translation":
            lines.append(f'translate:    nlparena translate --ckpt_path {ckpt} "SOURCE TEXT"')
    return lines


def run_of_checkpoint(ckpt_path: str | os.PathLike[str]) -> Path | None:
    """The run folder that wrote a checkpoint: RUN of `RUN/checkpoints/X.ckpt`; None for a checkpoint elsewhere."""
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def tested_summary(trainer: pl.Trainer, ckpt_path: str | None) -> list[str]:
    """The lines that end a test: the checkpoint tested, the run that wrote it, and the test's own log folder (whose
    `tested_checkpoint.txt` names the same), written here."""
    if not ckpt_path:
        return []
    run = run_of_checkpoint(ckpt_path)
    of_run = f" (of the run {shown_path(run)})" if run is not None else ""
    lines = [f"tested: {shown_path(ckpt_path)}{of_run}"]
    folder = run_folder(trainer)
    if folder:
        Path(folder, TESTED_FILE).write_text(
            f"checkpoint: {Path(ckpt_path).resolve()}\nrun: {run.resolve() if run is not None else 'none'}\n"
        )
        lines.append(f"test logs:  {shown_path(folder)} (its {TESTED_FILE} names the tested checkpoint)")
    return lines
