"""`--model.compile true` and `--trainer.precision bf16-mixed` train through the CLI on CPU; GPU configs on a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nlparena.cli import NlpArenaCLI
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli
from tests.models.test_classification import PRETRAIN, TINY_CLASSIFIERS, TINY_SPLITS

COPY = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET]
BERT = [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET]


def last_checkpoint() -> dict:
    (path,) = Path("logs").glob("**/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_compiled_fit_writes_the_checkpoint_keys_of_an_eager_one(tmp_path):
    short = ["--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.logger.init_args.save_dir=logs"]
    run_cli("fit", *COPY, *short, "--model.compile=true")
    compiled = last_checkpoint()
    assert compiled["hyper_parameters"]["compile"] is True
    Path("logs").rename(tmp_path / "compiled_logs")
    run_cli("fit", *COPY, *short)
    eager = last_checkpoint()
    assert list(compiled["state_dict"]) == list(eager["state_dict"])  # no `_orig_mod.` in the names
    assert all(torch.isfinite(t).all() for t in compiled["state_dict"].values() if t.is_floating_point())


@pytest.mark.parametrize("args", [COPY, BERT, PRETRAIN], ids=["Transformer", "BertClassifier", "BertPretraining"])
def test_bf16_mixed_fast_dev_run_passes_on_cpu(args):
    cli = NlpArenaCLI(args=[*args, "--trainer.precision=bf16-mixed", "--trainer.fast_dev_run=2"], run=False)
    before = {key: value.clone() for key, value in cli.model.state_dict().items()}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2
    after = cli.model.state_dict()
    # mixed precision: the weights stay float32, the steps change them, and they stay finite
    assert all(after[key].dtype == value.dtype for key, value in before.items())
    trained = [key for key, p in cli.model.named_parameters() if p.requires_grad]
    unchanged = [key for key in trained if torch.equal(before[key], after[key])]
    assert trained and not unchanged
    assert all(torch.isfinite(value).all() for value in after.values() if value.is_floating_point())


@pytest.mark.gpu
def test_the_gpu_config_trains_compiled_in_bf16():
    run_cli(
        "fit",
        "-c",
        str(Path(__file__).parents[2] / "configs/trainer/gpu.yaml"),
        *COPY,
        "--model.compile=true",
        "--trainer.devices=1",
        "--trainer.fast_dev_run=2",
    )
