"""A smoke run (`--trainer.fast_dev_run 2`) of every config in configs/ that `nlparena fit` takes: each one trains
two steps, validates two batches and logs its metrics, whatever warmup or length its real run has."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from nlparena.cli.lightning import NlpArenaCLI
from tests.conftest import run_cli

CONFIGS = Path(__file__).parent.parent / "configs"
# the configs of `nlparena fit` (a model to train); compare and experiment configs list runs instead
FIT_CONFIGS = sorted(
    path.relative_to(CONFIGS).as_posix()
    for path in CONFIGS.rglob("*.yaml")
    if "model" in (yaml.safe_load(path.read_text()) or {})
)
PRETRAINING = "pretraining/bert.yaml"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """The checkpoint of a two-step run of the pre-training config, for the configs that start from it."""
    folder = tmp_path_factory.mktemp("pretraining")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
        run_cli(
            "fit", "-c", str(CONFIGS / PRETRAINING), "--trainer.max_steps=2", "--trainer.limit_val_batches=1", *quiet
        )
    (checkpoint,) = folder.rglob("last.ckpt")
    return checkpoint


def test_the_smoke_runs_cover_every_kind_of_fit_config():
    assert {"quickstart.yaml", PRETRAINING, "classification/bert_pretrained.yaml"} <= set(FIT_CONFIGS)
    assert not any(name.startswith("compare/") for name in FIT_CONFIGS)


@pytest.mark.parametrize("name", FIT_CONFIGS)
def test_every_fit_config_smoke_runs_and_logs_its_metrics(request, name):
    config = yaml.safe_load((CONFIGS / name).read_text())
    extra = []
    if config["model"].get("init_args", {}).get("pretrained"):  # a checkpoint of the pre-training config
        extra.append(f"--model.pretrained={request.getfixturevalue('pretrained')}")
    cli = NlpArenaCLI(
        args=[
            "fit",
            "-c",
            str(CONFIGS / name),
            "--trainer.fast_dev_run=2",
            "--trainer.enable_progress_bar=false",
            *extra,
        ]
    )
    assert cli.trainer.global_step == 2
    logged = cli.trainer.logged_metrics
    assert "train/loss" in logged and any(key.startswith("val/") for key in logged), sorted(logged)
    assert all(math.isfinite(float(value)) for value in logged.values()), logged
