"""A run's terminal carries nlparena's own lines: no adverts, no deprecations nobody can act on, no warnings about
settings nlparena made itself (a user's own misconfiguration still warns); a fit ends with where it went, its best
validation value and checkpoint; a test says which run it tested; `test --ckpt_path` needs no config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nlparena.cli import NlpArenaCLI
from nlparena.cli.summaries import NetworkModules
from nlparena.events import read_events
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli
from tests.models.test_classification import TINY_CLASSIFIERS, TINY_SPLITS

ROOT = Path(__file__).parents[1]
QUICKSTART = ["-c", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.max_epochs=1", "--threads=1"]
SMALL = ["--data.train_size=640", "--data.val_size=64", "--data.test_size=64", "--trainer.enable_progress_bar=false"]
# what other libraries printed in every run, and what nlparena's own settings made Lightning say
FOREIGN = (
    "💡 Tip",
    "litlogger",
    "litmodels",
    "configure_callbacks",
    "LeafSpec",
    "multiple `ModelCheckpoint`",
    "The dirpath has changed",
    "FLOPs",
    "train_window",
    "RatioSums",
    "StageMetrics",
    "could not find the monitored key",
)
RUN = Path("logs/quickstart/Transformer/version_0")
USER_WARNING = "is smaller than the logging interval Trainer(log_every_n_steps=20)"  # the quick start's, on 10 batches


def nlparena(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nlparena ARGS` as a new process in `cwd`: its stderr is all the terminal shows, warnings included."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # nlparena as this process has it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "nlparena", *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The quick start's fit (one epoch of 640 examples), in a folder of its own."""
    cwd = tmp_path_factory.mktemp("quickstart")
    return cwd, nlparena(cwd, "fit", *QUICKSTART, *SMALL)


def foreign_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(text in line for text in FOREIGN)]


def test_the_quick_start_prints_no_foreign_lines_and_ends_with_its_run_folder_best_value_and_checkpoint(quickstart):
    cwd, fit = quickstart
    assert foreign_lines(fit.stderr) == []
    assert USER_WARNING in fit.stderr  # a setting of the user's own still warns
    assert "| net  | Transformer |" in fit.stderr  # the model summary lists the network
    best = next((cwd / RUN / "checkpoints").glob("best-epoch000-*.ckpt")).relative_to(cwd)
    score = read_events(cwd / RUN).last("val/exact_match")
    run, value, test = fit.stdout.splitlines()[-4:-1]
    assert run == f"run folder: {RUN}"
    assert value == f"best val/exact_match: {score:.4f} at epoch 0, in {best}"
    assert test.split() == ["test", "it:", "nlparena", "test", "--ckpt_path", str(best)]
    assert fit.stdout.splitlines()[-1].startswith(f"translate:    nlparena translate --ckpt_path {best} ")


def test_a_test_of_a_checkpoint_with_no_config_names_the_run_it_tested_and_prints_no_foreign_lines(quickstart):
    cwd, _ = quickstart
    test = nlparena(cwd, "test", f"--ckpt_path={RUN}/checkpoints/last.ckpt", "--trainer.enable_progress_bar=false")
    assert foreign_lines(test.stderr) == []
    folder = RUN.parent / "version_1"  # the test's own, beside the run's
    assert (cwd / folder / "test_outputs.csv").is_file()
    assert test.stdout.splitlines()[-2:] == [
        f"tested: {RUN}/checkpoints/last.ckpt (of the run {RUN})",
        f"test logs:  {folder} (its tested_checkpoint.txt names the tested checkpoint)",
    ]
    assert (cwd / folder / "tested_checkpoint.txt").read_text().splitlines() == [
        f"checkpoint: {(cwd / RUN / 'checkpoints' / 'last.ckpt').resolve()}",
        f"run: {(cwd / RUN).resolve()}",
    ]


TINY = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1"]


def files(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its modification time."""
    return {str(path): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("version", [None, 3])  # the logger picks the folder, or the config names it (compare's runs)
def test_a_test_with_no_config_gives_the_metrics_of_one_with_the_runs_config_and_leaves_the_run_untouched(version):
    named = [] if version is None else [f"--trainer.logger.init_args.version={version}"]
    run_cli("fit", *TINY, *named)
    run = Path(f"logs/Copy/Transformer/version_{version or 0}")
    before = files(run)
    checkpoint = f"--ckpt_path={run}/checkpoints/last.ckpt"
    run_cli("test", checkpoint)
    run_cli("test", "-c", str(run / "config.yaml"), checkpoint, "--trainer.logger.init_args.version=null")
    assert files(run) == before  # the run's logs and checkpoints are never touched
    first, second = (Path(f"logs/Copy/Transformer/version_{(version or 0) + n}") for n in (1, 2))
    tested = read_events(first).scalars
    assert {tag for tag in tested if tag.startswith("test/")} >= {"test/exact_match", "test/loss"}
    assert tested == read_events(second).scalars


def test_a_setting_given_beside_the_runs_config_overrides_it():
    run_cli("fit", *TINY)
    checkpoint = "--ckpt_path=logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    run_cli("test", checkpoint, "--data.test_size=7", "--model.decode=beam")
    used = yaml.safe_load(Path("logs/Copy/Transformer/version_1/config.yaml").read_text())
    assert used["data"]["init_args"]["test_size"] == 7 and used["model"]["init_args"]["decode"] == "beam"
    assert used["data"]["init_args"]["train_size"] == 90  # the run's, not the class default
    assert used["model"]["init_args"]["transformer"]["d_model"] == 16


def test_a_checkpoint_with_no_run_config_is_one_line(capsys):
    run_cli("fit", *TINY)
    Path("elsewhere").mkdir()
    Path("elsewhere/last.ckpt").write_bytes(Path("logs/Copy/Transformer/version_0/checkpoints/last.ckpt").read_bytes())
    Path("logs/Copy/Transformer/version_0/config.yaml").unlink()
    for path, why in [
        ("elsewhere/last.ckpt", "not in a run's checkpoints/ folder"),
        ("logs/Copy/Transformer/version_0/checkpoints/last.ckpt", "no logs/Copy/Transformer/version_0/config.yaml"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            run_cli("test", f"--ckpt_path={path}")
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"nlparena: error: --ckpt_path {path}: {why}, the config of the run that wrote it; give the settings "
            "with -c CONFIG (or --model and --data)"
        )
    assert sorted(path.name for path in Path("logs/Copy/Transformer").iterdir()) == ["version_0"]


def test_testing_the_best_checkpoint_after_a_fit_and_resuming_into_a_new_folder_warn_only_of_the_users_settings(
    recwarn, caplog, capfd
):
    cli = NlpArenaCLI(args=[*TINY, "--trainer.log_every_n_steps=50"], run=False)  # as `nlparena compare` runs a trial
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)
    best = cli.trainer.checkpoint_callback.best_model_path
    assert Path(best).name.startswith("best-epoch000")  # the best checkpoint, the first of the model's two
    run_cli("fit", *TINY, "--trainer.max_epochs=2", f"--ckpt_path={best}")  # into version_1
    shown = [str(warning.message) for warning in recwarn] + caplog.messages + capfd.readouterr().err.splitlines()
    assert [line for line in shown if any(text in line for text in FOREIGN)] == []
    assert any("log_every_n_steps=50" in line for line in shown)  # the user's own setting still warns


def test_a_fit_without_validation_ends_with_its_last_checkpoint_and_no_warning_of_the_models_own(recwarn, capsys):
    run_cli("fit", *TINY, "--trainer.limit_val_batches=0")
    last = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    assert capsys.readouterr().out.splitlines()[-3:-1] == [
        f"no val/exact_match was logged (no validation ran); the last weights are in {last}",
        f"test it:      nlparena test --ckpt_path {last}",
    ]
    assert [str(w.message) for w in recwarn if any(text in str(w.message) for text in FOREIGN)] == []


@pytest.mark.parametrize(
    "args",
    [[*TINY_MODEL, "--data=Copy", *TINY_DATA], [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", *TINY_SPLITS]],
    ids=["translation", "classification"],
)
@pytest.mark.parametrize("depth", [1, 2])
def test_the_model_summary_lists_the_network_not_the_metrics(args, depth):
    model = NlpArenaCLI(args=[*args, *QUIET], run=False).model
    assert {name for name, _ in model.named_children()} > {"net", "train_window", "val_metrics"}
    listed = NetworkModules(model, max_depth=depth).layer_names
    assert listed[0] == "net" and all(name.split(".")[0] == "net" for name in listed)
    assert len(listed) > 1 if depth == 2 else listed == ["net"]
