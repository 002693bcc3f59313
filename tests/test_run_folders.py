"""Every run gets a version folder of its own, even when runs start together."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.loggers import TensorBoardLogger

from nlparena.cli import NlpArenaCLI
from nlparena.cli.logger import RunFolderLogger
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL


def test_two_loggers_that_start_together_claim_different_version_folders():
    # both pick their version before either has written anything, as two processes started together do
    plain = [TensorBoardLogger("plain", name="run") for _ in range(2)]
    assert [logger.version for logger in plain] == [0, 0]  # Lightning's own logger: one folder for both
    first, second = RunFolderLogger("logs", name="run"), RunFolderLogger("logs", name="run")
    assert (first.version, second.version) == (0, 1)
    assert sorted(path.name for path in Path("logs/run").iterdir()) == ["version_0", "version_1"]
    assert RunFolderLogger("logs", name="run", version=7).version == 7  # a version given is used as it is


def test_a_config_that_names_lightnings_tensorboard_logger_gets_the_claiming_one():
    logger = ["--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger", "--trainer.logger.save_dir=logs"]
    cli = NlpArenaCLI(args=[*TINY_MODEL, "--data=Copy", *TINY_DATA, *logger], run=False)
    assert isinstance(cli.trainer.logger, RunFolderLogger)
    assert cli.trainer.logger.name == "Copy/Transformer"


@pytest.mark.slow
def test_ten_fits_started_together_get_ten_folders_each_with_one_process_events():
    command = [sys.executable, "-m", "nlparena", "fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET]
    command += ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(10)]
    for proc in procs:
        assert proc.wait(timeout=600) == 0, proc.communicate()[1]
    folders = sorted(Path("logs/Copy/Transformer").iterdir())
    assert [folder.name for folder in folders] == sorted(f"version_{i}" for i in range(10))
    writers = []
    for folder in folders:
        pids = {path.name.split(".")[-2] for path in folder.glob("events.out.tfevents.*")}
        assert len(pids) == 1, folder  # event files of one process only
        assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
        writers += pids
    assert sorted(writers) == sorted(str(proc.pid) for proc in procs)
