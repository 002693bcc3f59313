import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nlparena.callbacks.random_state import capture, restore
from tests.conftest import BATCH, QUIET
from tests.models.test_classification import TINY_CLASSIFIERS


def draws() -> tuple:
    """One draw from every global stream, Gaussian ones included (numpy and Python cache a second value)."""
    return random.random(), random.gauss(0, 1), np.random.rand(), np.random.standard_normal(), torch.rand(3).tolist()


def test_random_states_come_back_from_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both
    torch.save({"rng_states": [capture()]}, tmp_path / "states.ckpt")
    expected = draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore(torch.load(tmp_path / "states.ckpt", weights_only=True)["rng_states"][0])
    assert draws() == expected


@pytest.mark.slow
def test_a_two_process_ddp_run_resumes_bit_identical_with_each_process_own_random_states():
    fit = [sys.executable, "-m", "nlparena", "fit", "--seed_everything=0", *TINY_CLASSIFIERS["RNNClassifier"]]
    fit += ["--model.rnn.dropout=0.1", "--data=Sentiment", "--data.train_size=90", "--data.val_size=40"]
    fit += [f"--data.batch_size={BATCH + 5}", *QUIET, "--trainer.accelerator=cpu", "--trainer.devices=2"]
    fit += ["--trainer.strategy=ddp"]  # gloo on CPU; Lightning launches the second process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = Path("logs/Sentiment/RNNClassifier")
    for more in (["--trainer.max_epochs=2"], ["--trainer.max_epochs=1"]):
        subprocess.run([*fit, *more], check=True, env=env, timeout=300)
    half = torch.load(runs / "version_1/checkpoints/last.ckpt", weights_only=True)
    assert len(half["rng_states"]) == 2  # both processes' states, which differ: their batches differ
    assert not torch.equal(half["rng_states"][0]["torch"], half["rng_states"][1]["torch"])
    resume = f"--ckpt_path={runs / 'version_1/checkpoints/last.ckpt'}"
    subprocess.run([*fit, "--trainer.max_epochs=2", resume], check=True, env=env, timeout=300)
    whole, resumed = (torch.load(runs / f"version_{v}/checkpoints/last.ckpt", weights_only=True) for v in (0, 2))
    assert resumed["global_step"] == whole["global_step"]
    assert all(torch.equal(resumed["state_dict"][key], value) for key, value in whole["state_dict"].items())
