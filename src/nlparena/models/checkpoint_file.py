"""A checkpoint file that a user named (`--ckpt_path`, `--model.pretrained`), read with every way it can be unusable
as one ConfigError line naming it: missing, a folder, empty, cut short, a text file, not a Lightning checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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
