"""A checkpoint file that a user named (`--ckpt_path`, `--model.pretrained`), read with every way it can be unusable
as one ConfigError line naming it: missing, a folder, empty, cut short, a text file, not a Lightning checkpoint; and
checkpoints written whole or not at all (`AtomicCheckpointIO`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch import Trainer

from nlparena.errors import ConfigError, one_line


def read_checkpoint(path: str | Path, what: str) -> dict[str, Any]:
    """The checkpoint at `path` (on the CPU, tensors only); `what` names it in errors (`--ckpt_path PATH`)."""
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{what}: is a folder, not a checkpoint file (give the .ckpt file in its checkpoints/)")
    if not file.exists():
        raise ConfigError(f"{what}: no such file")
    if not file.is_file():
        raise ConfigError(f"{what}: not a regular file")
    if file.stat().st_size == 0:
        raise ConfigError(f"{what}: is empty (0 bytes), not a checkpoint")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a file it cannot read
        reason = one_line(str(err).split("\n", 1)[0], 90)
        raise ConfigError(
            f"{what}: cannot be read as a checkpoint (cut short, or another kind of file: {type(err).__name__}: "
            f"{reason})"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ConfigError(f"{what}: not a checkpoint written by `nlparena fit` (no state_dict in it)")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing a checkpoint whole or not at all: into a temporary file in the same
    folder, renamed over the checkpoint once written and synced (a rename within a folder is atomic). A full disk or a
    crash leaves the previous checkpoint (or none), never one cut short, and the OSError names the checkpoint.

    (Lightning's own writer goes through a temporary file in the system's temporary folder, moved by copying when
    that is another file system: the copy is cut short when the disk fills.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):  # a remote file system: Lightning's own writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException as err:
            Path(temporary).unlink(missing_ok=True)
            cause = _os_error_in(err)  # torch's writer raises a RuntimeError from the file's OSError
            if cause is not None and not cause.filename:
                raise OSError(cause.errno, cause.strerror, str(target)) from err  # name the checkpoint
            raise
        return None


def _os_error_in(err: BaseException | None) -> OSError | None:
    """The OSError (with an errno) that `err` is or was raised from."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno is not None:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def write_checkpoints_atomically(trainer: Trainer) -> Trainer:
    """The Trainer, writing its checkpoints through AtomicCheckpointIO unless a plugin chose another writer."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer
