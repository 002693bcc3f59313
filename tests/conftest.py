"""Shared test settings: tiny sizes that all differ, so that a swapped dimension fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nlparena.__main__ import main
from nlparena.events import read_events

VOCAB, D_MODEL, HEADS, D_FF, SRC_LEN, TGT_LEN, BATCH, MAX_LEN = 11, 16, 2, 24, 7, 5, 3, 13


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(no_cuda)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Every test runs in its own folder, so runs write their logs/ there; pytest's argv stays out of the CLI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["nlparena"])


TINY_MODEL = [
    "--model=Transformer",
    f"--model.transformer.d_model={D_MODEL}",
    f"--model.transformer.n_heads={HEADS}",
    f"--model.transformer.d_ff={D_FF}",
    "--model.transformer.num_encoder_layers=1",
    "--model.transformer.num_decoder_layers=2",
]
TINY_RNN = ["--model.rnn.embed_dim=10", "--model.rnn.hidden_size=6"]
TINY_MODELS = {
    "Transformer": TINY_MODEL,
    "Seq2Seq": ["--model=Seq2Seq", *TINY_RNN],
    "Seq2SeqAttention": ["--model=Seq2SeqAttention", *TINY_RNN],
    "DecoderOnly": [
        "--model=DecoderOnly",
        f"--model.decoder.d_model={D_MODEL}",
        f"--model.decoder.n_heads={HEADS}",
        f"--model.decoder.d_ff={D_FF}",
        "--model.decoder.num_layers=2",
        "--model.decoder.attention=prefix",
    ],
}
TINY_DATA = [
    "--data.train_lengths=[3, 10]",
    "--data.train_size=90",
    "--data.val_size=20",
    "--data.test_size=20",
    f"--data.batch_size={BATCH + 5}",
]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def run_cli(*args: str) -> None:
    """Run `nlparena ARGS` in this process."""
    main(list(args))


def evaluate_in_one_and_two_processes(command: str, args: list[str], checkpoint: str | Path) -> None:
    """`nlparena COMMAND ARGS --ckpt_path CHECKPOINT` as a subprocess on one process, then on two (DDP, gloo on CPU;
    Lightning launches the second process), one thread each."""
    # the repository on the path, so that a class of the tests (`--data=tests....`) imports in the new process too
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    for devices in (1, 2):
        run = [command, *args, f"--ckpt_path={checkpoint}", f"--trainer.devices={devices}"]
        if devices == 2:
            run.append("--trainer.strategy=ddp")
        subprocess.run([sys.executable, "-m", "nlparena", *run], check=True, env=env, timeout=300)


def scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar a run logged to TensorBoard: tag -> [(step, value), ...]."""
    return read_events(run_dir).scalars
