"""What `nlparena compare` prints of its trials: one line when each starts and one when it ends (a failure names its
reason and its log), the progress lines and the report line, nothing of the trials' own output, which goes to a
`trial.log` in each trial's folder; and the lock of a comparison, refused to a second command while one runs, gone
when the command ends."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from filelock import FileLock, Timeout

from nlparena.compare import runner
from nlparena.compare.local_jobs import COLD_TRIALS
from nlparena.errors import ConfigError
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS

SHARED = ["--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1", "--trainer.limit_val_batches=1"]
RUNS = [
    {"name": "transformer", "args": TINY_MODEL},
    {"name": "seq2seq", "args": TINY_MODELS["Seq2Seq"]},
    # an lr so high that the loss is NaN after the first step: the trial stops inside training, exit 1
    {"name": "broken", "args": [*TINY_MODELS["Seq2Seq"], "--optimizer.init_args.lr=1e30"]},
]
NAME = "trials"
TRIAL_LOG = "trial.log"
LOGS = Path("logs/compare") / NAME


def write_config(path: Path, runs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"name": NAME, "shared": {"args": SHARED}, "seeds": [3], "runs": runs}))
    return path


@pytest.fixture(scope="module", params=["warm", "cold"])
def compared(request, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A folder where `nlparena compare -c trials.yaml --jobs 2` ran once as a command of its own (its trials forked
    from the warm server, or each a new interpreter), and what the command printed on stdout and stderr."""
    folder = tmp_path_factory.mktemp(request.param)
    env = {**os.environ, "OMP_NUM_THREADS": "1", COLD_TRIALS: "1" if request.param == "cold" else ""}
    config = write_config(folder / "trials.yaml", RUNS)
    command = [sys.executable, "-m", "nlparena", "compare", "-c", config.name, "--jobs", "2"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done  # the broken trial failed: the report is written, exit 1
    return folder, done


def trial_folder(run: str) -> Path:
    return LOGS / run / "seed_3" / "version_0"


def test_compare_prints_one_start_and_one_end_line_per_trial_and_nothing_else_from_the_trials(compared):
    _, done = compared
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    expected = {}  # pattern -> how many lines match it
    for position, run in enumerate(("transformer", "seq2seq", "broken"), start=1):
        trial = re.escape(f"[{position}/3] {run} seed 3: ")
        expected[trial + re.escape(f"running ({trial_folder(run)})")] = 1
        if run == "broken":
            log = re.escape(str(trial_folder(run) / TRIAL_LOG))
            expected[trial + rf"failed \(exit 1\): .*train loss is nan.* \(after \d+ s; log: {log}\)"] = 1
        else:
            expected[trial + r"finished in \d+ s, best val/exact_match \d\.\d{3}"] = 1
    expected[r"progress: \d done, \d running, \d failed, \d left(, ETA \d+\.\d min)?"] = 3
    expected[re.escape(f"report: {LOGS}/report.md (1 failed: broken seed 3)")] = 1
    matched = {pattern: [line for line in lines if re.fullmatch(pattern, line)] for pattern in expected}
    assert {pattern: len(found) for pattern, found in matched.items()} == expected, lines
    assert len(lines) == sum(expected.values()), lines  # no other line
    assert lines[-2] == "progress: 2 done, 0 running, 1 failed, 0 left"


def test_each_trials_output_goes_to_the_log_in_its_folder(compared):
    folder, _ = compared
    for run in ("transformer", "seq2seq"):
        log = (folder / trial_folder(run) / TRIAL_LOG).read_text()
        assert "Test metric" in log and "test/exact_match" in log  # Lightning's table of the test metrics
        assert (folder / trial_folder(run) / "compare.json").is_file()
    log = (folder / trial_folder("broken") / TRIAL_LOG).read_text()
    assert "nlparena: error: " in log and "train loss is nan" in log


def test_a_failed_trials_line_names_its_log_and_its_reason_kept_in_its_marker(compared):
    folder, done = compared
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("[3/3] broken seed 3: failed")]
    log = trial_folder("broken") / TRIAL_LOG
    assert line.endswith(f"; log: {log})") and (folder / log).is_file()
    marker = yaml.safe_load((folder / trial_folder("broken") / "compare.json").read_text())
    assert "train loss is nan" in marker["error"] and marker["error"] in line
    assert marker["log"] == str(log)
    assert any("train loss is nan" in tail_line for tail_line in marker["log_tail"])  # the log's last lines


def test_the_lock_is_gone_when_compare_ends(compared):
    folder, _ = compared
    assert (folder / LOGS / "report.md").is_file() and not (folder / LOGS / ".lock").exists()


@pytest.mark.parametrize("ending", [KeyboardInterrupt, RuntimeError])
def test_the_lock_refuses_a_second_compare_while_held_and_is_gone_after_an_interrupt_or_error(monkeypatch, ending):
    config = write_config(Path("trials.yaml"), RUNS[:1])
    refused = []

    def run_all(*args, **kwargs):
        assert (LOGS / ".lock").is_file()
        with pytest.raises(ConfigError) as second:  # another `nlparena compare` of the same comparison
            runner.compare(["-c", str(config)])
        refused.append(str(second.value))
        raise ending  # Ctrl-C, or any error while the trials run

    monkeypatch.setattr(runner, "run_all", run_all)
    with pytest.raises(ending):
        runner.compare(["-c", str(config)])
    in_use = f"{LOGS} is in use by another `nlparena compare` of {config}; run it again when that one has finished"
    assert refused == [in_use]
    assert not (LOGS / ".lock").exists()


def test_a_waiter_on_the_removed_lock_file_takes_a_new_one_and_still_excludes_others(monkeypatch):
    """Removing the file while holding it must not let two holders in: a process that opened it before it was
    removed and locks it after takes the lock on a new file, which a third is refused."""
    config = write_config(Path("trials.yaml"), RUNS[:1])
    waiting, acquired = threading.Event(), threading.Event()
    waiter = FileLock(LOGS / ".lock", timeout=60)

    def wait_for_the_lock() -> None:
        waiting.set()
        waiter.acquire()  # opens the file the compare holds, and waits for it
        acquired.set()

    def run_all(*args, **kwargs):
        thread.start()
        waiting.wait()
        assert not acquired.wait(0.5)  # held by the compare
        raise KeyboardInterrupt

    thread = threading.Thread(target=wait_for_the_lock)
    monkeypatch.setattr(runner, "run_all", run_all)
    with pytest.raises(KeyboardInterrupt):
        runner.compare(["-c", str(config)])
    thread.join(60)
    try:
        assert acquired.is_set() and (LOGS / ".lock").is_file()  # the waiter's lock is on a file that exists
        with pytest.raises(Timeout):
            FileLock(LOGS / ".lock", blocking=False).acquire()
    finally:
        waiter.release()
