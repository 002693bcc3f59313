"""Every random stream that training draws from, saved in each checkpoint and restored on resume, so that a run
resumed from a checkpoint ends bit-identical to one that never stopped."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

KEY = "rng_states"  # the checkpoint's entry: one state per process, by global rank


def capture() -> dict[str, Any]:
    """The global random states of torch (CPU and every CUDA device), numpy and Python, as plain values and tensors
    (a checkpoint then still loads with `weights_only=True`)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached_gaussian)],
        "python": random.getstate(),
    }


def restore(state: dict[str, Any]) -> None:
    """Set the global random states that `capture` returned."""
    torch.set_rng_state(state["torch"])
    cuda = state["torch.cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class RandomState(Callback):
    """Saves the random states of every process in each checkpoint and restores them when `fit --ckpt_path` resumes;
    on by default in `nlparena fit`.

    The states are taken when the checkpoint is written (at the end of an epoch's validation, or of the epoch when
    there is none): after that, nothing draws from them until the next training step, in an uninterrupted run as in
    a resumed one (the data loaders draw from their own generators, see `data/splits.py`; Lightning's sanity check
    runs with the states put back). They are restored when training starts, after the sanity check, so dropout
    masks continue the same streams. Under DDP every process's states are gathered (one collective per checkpoint);
    a run resumed on another number of processes restores those of process 0 on every process, with a warning.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states: list[Any] = [capture()]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            states = [None] * trainer.world_size
            dist.all_gather_object(states, capture())
        checkpoint[KEY] = states

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get(KEY)
        if not states:
            rank_zero_warn(
                "the checkpoint holds no random states (written before they were saved): resume is not exact"
            )
            return
        if len(states) != trainer.world_size:
            rank_zero_warn(
                f"the checkpoint holds the random states of {len(states)} processes, this run has "
                f"{trainer.world_size}: every process restores those of process 0; resume is not exact"
            )
        self._pending = states[trainer.global_rank] if len(states) == trainer.world_size else states[0]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None
