"""How a search trial's process and the `nlparena compare` process that owns its study talk: through two kinds of
file in the trial's version folder, so that the study's database has one writer (the compare process), whatever runs
the trial (a local process, a submitit job on a node that shares the file system).

After each validation the trial appends `{"step": K, "value": V}` (its validation headline metric) to
`search_reports.jsonl` and waits for `search_answer_K.json` (`{"prune": true|false}`), which the compare process
writes once it has reported the value to Optuna and asked its pruner. A pruned trial stops training. A trial whose
compare process is gone (its pid, given where both run on one machine) or that waits longer than ANSWER_SECONDS
ends itself instead of training on with no one to report to.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

REPORTS = "search_reports.jsonl"
ANSWER_SECONDS = 600.0
POLL_SECONDS = 0.02


def answer_path(folder: Path, step: int) -> Path:
    return folder / f"search_answer_{step}.json"


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (0: not known, taken as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SearchReporter(Callback):
    """In a search trial: reports the validation headline metric after each validation (not the sanity check) and
    stops training when the compare process answers that the trial is pruned."""

    def __init__(self, folder: Path, metric: str, coordinator_pid: int = 0) -> None:
        self.folder, self.metric, self.coordinator_pid = folder, metric, coordinator_pid
        self.step = 0
        self.values: list[float] = []
        self.pruned = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.metric not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.metric])
        self.values.append(value)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / REPORTS, "a") as reports:
            reports.write(json.dumps({"step": self.step, "value": value if math.isfinite(value) else None}) + "\n")
        if self.wait_answer(answer_path(self.folder, self.step)):
            self.pruned = True
            trainer.should_stop = True
        self.step += 1

    def wait_answer(self, path: Path) -> bool:
        """Whether the compare process prunes this trial; SystemExit if it is gone or does not answer."""
        deadline = time.monotonic() + ANSWER_SECONDS
        while not path.is_file():
            if not process_alive(self.coordinator_pid) or time.monotonic() > deadline:
                raise SystemExit(f"search trial: no answer from the compare process (pid {self.coordinator_pid})")
            time.sleep(POLL_SECONDS)
        return bool(json.loads(path.read_text())["prune"])


class ReportReader:
    """The compare process's side: the reports a trial has written since the last call, and the answers."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offset = 0

    def new_reports(self) -> list[dict[str, Any]]:
        """Whole lines written since the last call (a line being written is read next time)."""
        try:
            with open(self.folder / REPORTS, "rb") as reports:
                reports.seek(self.offset)
                data = reports.read()
        except FileNotFoundError:
            return []
        whole = data[: data.rfind(b"\n") + 1]
        self.offset += len(whole)
        return [json.loads(line) for line in whole.splitlines() if line.strip()]

    def answer(self, step: int, prune: bool) -> None:
        """Written whole (a temporary file renamed), so that the trial never reads half an answer."""
        path = answer_path(self.folder, step)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"prune": prune}) + "\n")
        partial.replace(path)
