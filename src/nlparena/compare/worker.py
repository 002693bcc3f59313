"""One run of `nlparena compare`, in its own process: `python -m nlparena.compare.worker --save_dir DIR --name RUN
--version N [--search PID] [--stop_at_target TARGET] -- FIT_ARGS...`, its output to its log file (`--search`: a
search trial; `--stop_at_target`: the fit stops once its headline metric reaches TARGET; see `fit_and_test`).

The run is built by the same `NlpArenaCLI` as `nlparena fit` (same parser, links, callbacks, checkpointing), fitted,
then tested on its best checkpoint. What the report needs goes into the run's TensorBoard event files
(`compare/parameters`, `compare/fit_seconds`, `compare/samples_per_second`, `compare/tokens_per_second`);
`compare.json`, written last, marks the run finished (so `nlparena compare` skips it next time) and records the
settings it ran with.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from nlparena.cli.lightning import NlpArenaCLI
from nlparena.compare.config import MARKER, logger_args, run_settings
from nlparena.compare.search_channel import SearchReporter
from nlparena.errors import one_line_errors


class RunStats(Callback):
    """Logs the numbers a comparison reports that the model does not: trainable parameters, fit wall time
    (training and validation, from fit start to fit end: not start-up or data generation) and training throughput
    (samples and non-pad input tokens per second, timed over training only: validation pauses the clock), the
    latter at each epoch's end as the average so far, so that its last value is the whole fit's.

    Lightning's ThroughputMonitor was the first choice, but it reports a rolling window of `window_size` batches
    only once the window is full (nothing for short runs), logs `test/samples`, `test/time`, ... beside the test
    metrics and warns without a FLOPs count; one whole-run figure per run is what a comparison needs.
    Counts are summed on the device (no sync per step) and read at epoch ends; under DDP each process counts
    its share and the figures are scaled by the world size (shares are equal).
    """

    def __init__(self) -> None:
        self.samples = 0
        self.tokens: torch.Tensor | None = None
        self.train_seconds = 0.0
        self.fit_seconds = 0.0
        self.parameters = 0
        self._clock: float | None = None
        self._paused = False
        self._fit_start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self.parameters = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        self._log(trainer, {"compare/parameters": self.parameters}, step=0)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start_clock(pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        inputs = batch[trainer.datamodule.input_name] if hasattr(trainer.datamodule, "input_name") else None
        if not isinstance(inputs, torch.Tensor):
            return
        self.samples += inputs.shape[0]
        real = (inputs != getattr(pl_module, "pad_id", 0)).sum()  # stays on the device: no sync per step
        self.tokens = real if self.tokens is None else self.tokens + real

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._paused = self._clock is not None  # not during the sanity check, before training starts
        self._stop_clock(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._paused:
            self._paused = False
            self._start_clock(pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_clock(pl_module)
        self._log(trainer, self.throughput(trainer.world_size), trainer.global_step)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_seconds = time.perf_counter() - self._fit_start
        self._log(trainer, {"compare/fit_seconds": self.fit_seconds}, trainer.global_step)

    def throughput(self, world_size: int) -> dict[str, float]:
        """Samples and input tokens per second of training so far, over all processes."""
        if self.train_seconds <= 0 or self.tokens is None:
            return {}  # no batch seen, or batches without the data module's `input_name` tensor
        return {
            "compare/samples_per_second": self.samples * world_size / self.train_seconds,
            "compare/tokens_per_second": float(self.tokens) * world_size / self.train_seconds,
        }

    def _start_clock(self, pl_module: pl.LightningModule) -> None:
        if self._clock is None:
            _synchronize(pl_module)
            self._clock = time.perf_counter()

    def _stop_clock(self, pl_module: pl.LightningModule) -> None:
        if self._clock is not None:
            _synchronize(pl_module)
            self.train_seconds += time.perf_counter() - self._clock
            self._clock = None

    @staticmethod
    def _log(trainer: pl.Trainer, metrics: dict[str, float], step: int) -> None:
        if metrics and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)


def _synchronize(pl_module: pl.LightningModule) -> None:
    """Wait for queued GPU work, so that the clock measures it (CPU work is done when the call returns)."""
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


def stop_at_target(target: float, metric: str, mode: str) -> EarlyStopping:
    """Lightning's EarlyStopping that ends a fit at the first validation whose `metric` reaches `target` (>= for
    "max", <= for "min", as the report counts it) and never otherwise: no patience, max_epochs is the budget.

    EarlyStopping stops once the metric is strictly past its `stopping_threshold` (a metric of exactly 1.0 would never
    stop at a target of 1.0), so the threshold is the float32 next to the first float32 that reaches the target, on
    the other side: a metric (float32, as logged) is past it exactly when it reaches the target."""
    toward = torch.tensor(math.inf if mode == "max" else -math.inf)
    first = torch.tensor(target, dtype=torch.float32)  # the nearest float32, which may fall short of the target
    if (float(first) < target) if mode == "max" else (float(first) > target):
        first = torch.nextafter(first, toward)
    threshold = float(torch.nextafter(first, -toward))
    return EarlyStopping(
        monitor=metric, mode=mode, stopping_threshold=threshold, patience=sys.maxsize, check_on_train_epoch_end=False
    )


def fit_and_test(
    fit_args: list[str],
    save_dir: str,
    name: str,
    version: int,
    search_pid: int | None = None,
    stop_at: float | None = None,
) -> dict[str, Any]:
    """Fit as `nlparena fit FIT_ARGS` does, test the best checkpoint (the last weights if there is none) and
    return what `compare.json` records. A search trial (`search_pid`: the compare process that owns its study)
    reports each validation to it (`search_channel`), stops when pruned, and is not tested: a search sees
    validation only. With `stop_at`, the fit stops at the first validation whose headline metric reaches it."""
    cli = NlpArenaCLI(args=[*fit_args, *logger_args(save_dir, name, version)], run=False)
    trainer, model = cli.trainer, cli.model
    stats = RunStats()
    trainer.callbacks.append(stats)
    if stop_at is not None:
        trainer.callbacks.append(stop_at_target(stop_at, model.headline_metric, model.headline_mode))
    reporter = None
    if search_pid is not None:
        reporter = SearchReporter(Path(save_dir, name, f"version_{version}"), model.headline_metric, search_pid)
        trainer.callbacks.append(reporter)
    trainer.fit(model, datamodule=cli.datamodule)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    start = time.perf_counter()
    if reporter is None:
        trainer.test(model, datamodule=cli.datamodule, ckpt_path="best" if best else None)
    return {
        "status": "pruned" if reporter and reporter.pruned else "finished",
        **({"search_values": reporter.values} if reporter else {}),
        "run": name,
        "seed": cli.config.get("seed_everything"),
        "model": type(model).__name__,
        "headline_metric": model.headline_metric,
        "headline_mode": model.headline_mode,
        **({"stop_at_target": stop_at} if stop_at is not None else {}),
        "parameters": stats.parameters,
        "fit_seconds": stats.fit_seconds,
        "test_seconds": time.perf_counter() - start,
        "tested_checkpoint": (best or "last weights") if reporter is None else None,
        "log_dir": str(trainer.logger.log_dir),
        "is_global_zero": trainer.is_global_zero,
    }


def main(argv: list[str] | None = None) -> None:
    """Parse `--save_dir DIR --name RUN --version N [...] -- FIT_ARGS...`, run, write the marker last.

    Its output is the trial's log file (see `local_jobs`): no progress bar (in a file, a line per redraw), and
    stdout written line by line, so that it keeps its place among stderr's lines."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        split = argv.index("--")
        options = dict(zip(argv[:split:2], argv[1:split:2], strict=True))
        save_dir, name, version = options["--save_dir"], options["--name"], int(options["--version"])
        search_pid = int(options["--search"]) if "--search" in options else None
        stop_at = float(options["--stop_at_target"]) if "--stop_at_target" in options else None
    except (ValueError, KeyError):
        raise SystemExit(
            "usage: python -m nlparena.compare.worker --save_dir DIR --name RUN --version N [--search PID] "
            "[--stop_at_target TARGET] -- ARGS"
        ) from None
    fit_args = argv[split + 1 :]  # sys.argv stays as it is: Lightning relaunches this runner for DDP workers
    settings = run_settings(fit_args, stop_at)  # before training: a config edited meanwhile is not what ran
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    with one_line_errors():
        fit_args = [*fit_args, "--trainer.enable_progress_bar=false"]
        record = fit_and_test(fit_args, save_dir, name, version, search_pid, stop_at)
    if record.pop("is_global_zero"):
        record["settings"] = settings
        Path(record["log_dir"], MARKER).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
