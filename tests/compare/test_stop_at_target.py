"""`stop_at_target: true` in a compare config: each trial stops at the first validation whose headline metric reaches
the `target` (Lightning's EarlyStopping with a stopping threshold), else trains its whole budget (max_epochs); the
report says per run in how many seeds it reached the target and per trial whether, and when. The runs are a
planted problem whose headline metric rises with the lr (`planted.py`): when each reaches the target is known."""

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from nlparena.events import read_events
from tests.compare.planted import RISING, rising_value
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli

MAX_EPOCHS = 5
FAST = ["--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", f"--trainer.max_epochs={MAX_EPOCHS}"]
RISING_MODEL = ["--model=tests.compare.planted.RisingTransformer", *TINY_MODEL[1:]]
LR = "--optimizer.init_args.lr"
# `quick` reaches 1.0 after 2 epochs; `slow` (lr 0) stays at 0: it never reaches the target, nor improves (an
# EarlyStopping of Lightning's default patience, 3, would stop it after 4 epochs)
RUNS = [{"name": "quick", "args": [f"{LR}=5e-3"]}, {"name": "slow", "args": [f"{LR}=0.0"]}]
SEEDS = [0, 1]
NAME = "stopping"
LOGS = Path("logs/compare", NAME)


def write_config(name: str, **keys) -> str:
    config = {"name": name, "seeds": SEEDS, "shared": {"args": ["--data=Copy", *TINY_DATA, *QUIET, *RISING_MODEL]}}
    config["shared"]["args"] += FAST
    Path(f"{name}.yaml").write_text(yaml.safe_dump({**config, **keys, "runs": RUNS}, sort_keys=False))
    return f"{name}.yaml"


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    """A folder where `nlparena compare` ran the two runs with `target: 1.0` and `stop_at_target: true`."""
    folder = tmp_path_factory.mktemp("stopping")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("OMP_NUM_THREADS", "1")
        run_cli("compare", "-c", write_config(NAME, target=1.0, stop_at_target=True))
    return folder


def copied(compared: Path) -> None:
    shutil.copytree(compared, Path.cwd(), dirs_exist_ok=True)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_run_stops_at_the_first_validation_that_reaches_the_target_and_another_trains_all_its_epochs(compared):
    copied(compared)
    for seed in SEEDS:
        quick = read_events(LOGS / "quick" / f"seed_{seed}" / "version_0").scalars
        slow = read_events(LOGS / "slow" / f"seed_{seed}" / "version_0").scalars
        # one step per epoch (logged at steps 0, 1, ...): the quick run validated after epochs 1 and 2 and stopped;
        # the slow one trained all 5
        assert quick[RISING] == [(0, pytest.approx(rising_value(5e-3, 1))), (1, 1.0)]
        assert slow[RISING] == [(step, 0.0) for step in range(MAX_EPOCHS)]


def test_the_report_says_per_run_in_how_many_seeds_it_reached_the_target_and_per_trial_whether_and_when(compared):
    copied(compared)
    report = (LOGS / "report.md").read_text()
    results = report.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in results.splitlines() if line.startswith("|")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    column = headers.index(f"reached {RISING} ≥ 1.0")
    cells = {line.split("|")[1].strip(): line.split("|")[column + 1].strip() for line in lines[2:]}
    assert cells == {"`quick`": "2/2", "`slow`": "0/2"}
    assert f"- `reached {RISING} ≥ 1.0`: " in results  # explained below the table
    assert "each trial stops at the first validation that reaches it" in report  # the setup says so
    rows = {(row["run"], row["seed"]): row for row in read_rows(LOGS / "results.csv")}
    for seed in map(str, SEEDS):
        assert rows["quick", seed]["reached_target"] == "True" and rows["slow", seed]["reached_target"] == "False"
        assert rows["quick", seed]["steps_to_target"] == "1" and rows["slow", seed]["steps_to_target"] == ""
        assert rows["quick", seed]["epochs_to_target"] == "2" and rows["slow", seed]["epochs_to_target"] == ""
    (summary_quick, summary_slow) = read_rows(LOGS / "summary.csv")
    assert (summary_quick["reached_target"], summary_slow["reached_target"]) == ("2", "0")


def test_without_a_target_the_report_has_no_reached_column(compared):
    copied(compared)  # the same logs, reported by a config without a target
    run_cli("compare", "-c", write_config(NAME), "--report-only")
    assert "reached" not in (LOGS / "report.md").read_text()
    assert "reached_target" not in read_rows(LOGS / "results.csv")[0]
    assert "reached_target" not in read_rows(LOGS / "summary.csv")[0]


@pytest.mark.parametrize("target", [0.7, 0.99, 1.0, 0.1])
def test_the_stop_agrees_with_the_report_on_a_metric_exactly_at_the_target(target):
    """EarlyStopping stops only strictly past its threshold; the report counts a value equal to the target as
    reached (a float32 metric, as logged): the two agree on every float32 value around the target."""
    from nlparena.compare.worker import stop_at_target

    for mode in ("max", "min"):
        callback = stop_at_target(target, "val/x", mode)
        at = torch.tensor(target, dtype=torch.float32)
        for value in (at, torch.nextafter(at, torch.tensor(math.inf)), torch.nextafter(at, torch.tensor(-math.inf))):
            reached = float(value) >= target if mode == "max" else float(value) <= target
            assert bool(callback.monitor_op(value, callback.stopping_threshold)) == reached, (mode, float(value))
