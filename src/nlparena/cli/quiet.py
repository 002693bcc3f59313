"""What a command prints and writes before it is known to be runnable: held back until then.

A bad input must end the command with its one error line and nothing else: not Lightning's start-up lines ("Seed
set to 0", "GPU available: ...") nor Python warnings printed while the config was parsed and the classes were built,
and no run folder under `logs/`. `HeldBackOutput` keeps those lines until the checks have passed (then prints them as
they would have been) or drops them with the error; `no_folder_left_on_error` removes a run folder that a run made
before failing without having trained or logged anything.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback

from nlparena.errors import config_error_in

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class _Keep(logging.Handler):
    def __init__(self, kept: list[tuple[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.kept = kept

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(("log", record))


class HeldBackOutput:
    """Between `start()` and `release()` (or `drop()`), Lightning's log records and Python warnings are kept, in order,
    instead of printed. `release()` prints them as they would have been printed; `drop()` forgets them."""

    def __init__(self) -> None:
        self.kept: list[tuple[str, Any]] = []
        self._saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
        self._warnings: Any = None

    @property
    def active(self) -> bool:
        return self._warnings is not None

    def start(self) -> None:
        for name in LIGHTNING_LOGGERS:
            logger = logging.getLogger(name)
            self._saved.append((logger, logger.handlers[:], logger.propagate))
            logger.handlers, logger.propagate = [_Keep(self.kept)], False
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.showwarning = self._keep_warning

    def _keep_warning(self, *args: Any) -> None:
        self.kept.append(("warning", args))

    def _stop(self) -> list[tuple[str, Any]]:
        if not self.active:
            return []
        self._warnings.__exit__(None, None, None)
        self._warnings = None
        for logger, handlers, propagate in self._saved:
            logger.handlers, logger.propagate = handlers, propagate
        self._saved = []
        kept, self.kept = self.kept, []
        return kept

    def release(self) -> None:
        """Print what was kept, as it would have been printed."""
        for kind, item in self._stop():
            if kind == "log":
                logging.getLogger(item.name).handle(item)
            else:
                warnings.showwarning(*item)

    def drop(self) -> None:
        self._stop()

    def end(self, error: BaseException | None) -> None:
        """After the command's set-up: drop what was kept if it failed on a bad input (its one line says all),
        else print it (a crash's traceback keeps its context)."""
        if error is not None and config_error_in(error) is not None:
            self.drop()
        else:
            self.release()


class ReleaseAtStart(Callback):
    """Prints the held-back lines when the work starts (the first training batch is next, or testing, validating,
    predicting starts): a bad setting found while the run is set up (a warmup longer than the run, a checkpoint
    that does not fit) is still one line. Listed after the other callbacks, so that their start hooks ran."""

    def __init__(self, held_back: HeldBackOutput) -> None:
        self.held_back = held_back
        self.set_up = False  # the run is set up (checkpoint loaded, optimizers built): its work begins

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.set_up = True

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.set_up = True
        self.held_back.release()

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.set_up = True
        if trainer.state.fn == "validate":  # not fit's sanity check: fit's setup goes on until on_train_start
            self.held_back.release()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.set_up = True
        self.held_back.release()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.set_up = True
        self.held_back.release()


def _log_dirs(trainer: Trainer) -> list[tuple[Path, Path]]:
    """(save_dir, run folder) of each logger whose run folder is already chosen (never chooses one itself)."""
    found = []
    for logger in trainer.loggers:
        save_dir = getattr(logger, "save_dir", None)
        if save_dir and getattr(logger, "_version", None) is not None:  # `log_dir` would claim a version
            found.append((Path(save_dir), Path(logger.log_dir)))
    return found


def _nothing_logged(folder: Path) -> bool:
    """No checkpoint and no scalar, image or text in the folder: what a run leaves before its first step."""
    if any(folder.rglob("*.ckpt")):
        return False
    from nlparena.events import read_events

    events = read_events(folder)
    return not (events.scalars or events.images or events.texts)


@contextmanager
def no_folder_left_on_error(trainer: Trainer) -> Iterator[None]:
    """Remove the run folder (and the empty folders above it, up to `save_dir`, that did not exist before) when the
    run fails before it trained or logged anything; an earlier run's folder is never touched."""
    existed = {str(path) for logger in trainer.loggers for path in _chain(logger)}
    try:
        yield
    except BaseException:
        if trainer.is_global_zero:
            for save_dir, folder in _log_dirs(trainer):
                if str(folder) not in existed and folder.is_dir() and _nothing_logged(folder):
                    shutil.rmtree(folder, ignore_errors=True)
                    _remove_empty_parents(folder.parent, save_dir, existed)
        raise


def _chain(logger: Any) -> list[Path]:
    """The folders from `save_dir` down to the logger's root folder (`logs/`, `logs/Copy`, `logs/Copy/Transformer`)
    and the run folder if it is chosen: those that exist now are not removed."""
    save_dir = getattr(logger, "save_dir", None)
    if not save_dir:
        return []
    root = Path(getattr(logger, "root_dir", save_dir) or save_dir)
    paths = [p for p in (root, *root.parents) if p == Path(save_dir) or Path(save_dir) in p.parents]
    if getattr(logger, "_version", None) is not None:
        paths.append(Path(logger.log_dir))
    return [p for p in paths if p.exists()]


def _remove_empty_parents(folder: Path, save_dir: Path, existed: set[str]) -> None:
    """rmdir `folder` and its parents up to `save_dir` while each is empty and was made by this run."""
    while str(folder) not in existed and (folder == save_dir or save_dir in folder.parents):
        try:
            folder.rmdir()  # fails on a folder that is not empty: another run's content is never removed
        except OSError:
            return
        if folder == save_dir:
            return
        folder = folder.parent
