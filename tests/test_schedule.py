import math
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

from nlparena.callbacks.warmup import linear_warmup
from nlparena.cli.schedule import _count_devices
from nlparena.errors import ConfigError
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli, scalars

# 90 training examples in batches of 8: 12 batches an epoch
TINY = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET]
WARMUP_AND_STEP_DECAY = [
    "--trainer.callbacks+=Warmup",
    "--trainer.callbacks.steps=5",
    "--trainer.callbacks.start_factor=0.2",
    "--lr_scheduler=StepLR",
    "--lr_scheduler.step_size=4",
    "--lr_scheduler.gamma=0.5",
    "--lr_scheduler_interval=step",
]


def read_curve(csv: Path) -> list[float]:
    rows = csv.read_text().splitlines()
    assert rows[0] == "step,lr_group0"
    return [float(row.split(",")[1]) for row in rows[1:]]


def test_schedule_writes_a_png_of_the_warmup_and_step_decay_curve():
    run_cli("schedule", *TINY, *WARMUP_AND_STEP_DECAY, "--steps=14", "--out=plots/lr.png")
    image = imread("plots/lr.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    expected = [1e-3 * linear_warmup(k, 5, 0.2) * 0.5 ** (k // 4) for k in range(14)]
    assert read_curve(Path("plots/lr.csv")) == pytest.approx(expected)
    assert not Path("logs").exists()  # nothing trained, nothing logged


def test_schedule_draws_the_lr_that_training_logs():
    run_cli("schedule", *TINY, *WARMUP_AND_STEP_DECAY, "--trainer.max_epochs=2")
    run_cli("fit", *TINY, *WARMUP_AND_STEP_DECAY, "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1")
    logged = [lr for _, lr in scalars("logs/Copy/Transformer/version_0")["lr-AdamW"]]
    assert len(logged) == 24  # the config's own run: 2 epochs of 12 steps
    assert read_curve(Path("lr.csv")) == pytest.approx(logged)


def test_schedule_of_a_multi_device_config_scales_the_lr_and_shares_out_each_epoch():
    scaling = ["--trainer.callbacks+=LinearScaling", "--trainer.callbacks.reference_batch_size=8"]
    cosine = ["--lr_scheduler=CosineAnnealingLR", "--lr_scheduler.T_max=2", "--trainer.max_epochs=2"]
    run_cli("schedule", *TINY, *scaling, *cosine, "--trainer.devices=3", "--trainer.accumulate_grad_batches=2")
    # 3 devices × 2 accumulated × batch 8 = 6 × the reference batch; each process has ceil(90 / 3) = 30
    # examples an epoch, 4 batches, 2 optimizer steps; the cosine steps per epoch
    expected = [6e-3 * 0.5 * (1 + math.cos(math.pi * epoch / 2)) for epoch in (0, 0, 1, 1)]
    assert read_curve(Path("lr.csv")) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--steps=0"], "--steps 0: must be at least 1"),
        (["--out=lr.jpg"], "--out lr.jpg: must be a .png file"),
        (["--lr_scheduler=ReduceLROnPlateau", "--lr_scheduler.monitor=val/loss"], "ReduceLROnPlateau: its lr depends"),
        (["--trainer.callbacks+=Warmup", "--trainer.callbacks.steps=99"], "Warmup: 99 warmup steps but the run has"),
        (
            ["--trainer.callbacks+=Warmup", "--trainer.callbacks.steps=5", "--trainer.callbacks.start_factor=0"],
            "Warmup: start_factor=0.0: must be in (0, 1]",
        ),
    ],
)
def test_bad_schedule_settings_give_one_line(capsys, args, expected):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("schedule", *TINY, "--trainer.max_epochs=1", *args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nlparena: error: ") and expected in err, err
    assert not Path("lr.png").exists()


@pytest.mark.parametrize(("devices", "count"), [(2, 2), ("3", 3), ([0, 1], 2), ("0,1,2", 3), ("auto", 1)])
def test_schedule_counts_the_devices_a_config_asks_for(devices, count):
    assert _count_devices(devices, "cpu") == count


def test_schedule_refuses_a_device_setting_it_cannot_count():
    with pytest.raises(ConfigError, match=re.escape("trainer.devices='many': give a number of devices")):
        _count_devices("many", "cpu")
    with pytest.raises(ConfigError, match=re.escape("trainer.devices=-1: `schedule` cannot tell how many devices")):
        _count_devices(-1, "gpu")
