"""The TensorBoard logger of every `nlparena` run: Lightning's, with its version folder claimed atomically."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

# how a config names Lightning's TensorBoardLogger; NlpArenaCLI builds RunFolderLogger instead, with the same arguments
TENSORBOARD_LOGGERS = (
    "lightning.pytorch.loggers.TensorBoardLogger",
    "lightning.pytorch.loggers.tensorboard.TensorBoardLogger",
)


class RunFolderLogger(TensorBoardLogger):
    """TensorBoardLogger whose next `version_N` folder is claimed with `mkdir` (atomic: it fails if the folder
    exists) instead of being picked from a folder listing and made at the first write, so two runs started
    together never share a folder: the second takes the next number.

    Only the global-zero process claims; the others never write (TensorBoardLogger writes on rank 0 only) and read
    the run folder through the Trainer, which broadcasts rank 0's. A version given explicitly is used as it is.
    """

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0:
            return version
        root = Path(self.root_dir)
        root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                (root / f"version_{version}").mkdir()
            except FileExistsError:
                version += 1
            else:
                return version
