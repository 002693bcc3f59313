"""Local trials start from a warm process, forked from a server that imported torch, Lightning and the worker: each
is a process of its own that looks like a new `python -m nlparena.compare.worker` (environment, torch threads, argv,
main module) and gives the same results as one (`NLPARENA_COLD_TRIALS=1`); stopping the comparison kills them."""

import csv
import json
import os
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from nlparena.compare.jobs import Launcher, worker_argv
from nlparena.compare.local_jobs import COLD_TRIALS, WarmJob
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS, run_cli

PROBE = "--trainer.callbacks+=tests.compare.trial_probe.TrialProbe"
SHARED = ["--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=2", "--trainer.limit_val_batches=1", PROBE]
RUNS = [{"name": "transformer", "args": TINY_MODEL}, {"name": "seq2seq", "args": TINY_MODELS["Seq2Seq"]}]
TIMES = ("fit_seconds", "samples_per_second", "tokens_per_second")  # the columns that are not results


def compare(name: str, monkeypatch: pytest.MonkeyPatch, cold: bool) -> tuple[list[dict[str, str]], list[dict]]:
    """Run the 2-run comparison NAME with `--jobs 2`: its results.csv rows and each trial's `process.json`."""
    config = {"name": name, "shared": {"args": SHARED}, "seeds": [3], "runs": RUNS}
    Path(f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv(COLD_TRIALS, "1" if cold else "")
    run_cli("compare", "-c", f"{name}.yaml", "--jobs=2")
    with Path(f"logs/compare/{name}/results.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return rows, [json.loads((Path(row["log_dir"]) / "process.json").read_text()) for row in rows]


def test_warm_trials_run_as_cold_processes_would_with_the_same_results(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    # the repository on the path of a cold trial's new interpreter, for the probe callback of the tests
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # --jobs 2 gives each job one thread, on any machine
    warm, warm_processes = compare("warm", monkeypatch, cold=False)
    cold, cold_processes = compare("cold", monkeypatch, cold=True)

    assert [row["status"] for row in warm + cold] == ["finished"] * 4
    for warm_row, cold_row in zip(warm, cold, strict=True):
        results = [column for column in warm_row if column not in (*TIMES, "log_dir")]
        assert {column: warm_row[column] for column in results} == {column: cold_row[column] for column in results}
    for process in warm_processes:
        assert process["parent"] != os.getpid()  # forked by the server, not started by this process
    for warm_process, cold_process in zip(warm_processes, cold_processes, strict=True):
        assert cold_process["parent"] == os.getpid()
        warm_environment, cold_environment = (p.pop("environment") for p in (warm_process, cold_process))
        assert set(warm_environment.items()) ^ set(cold_environment.items()) == {(COLD_TRIALS, ""), (COLD_TRIALS, "1")}
        del warm_process["parent"], cold_process["parent"]
        assert warm_process["threads"] == 1 and warm_process == cold_process


def test_stop_kills_every_running_trial(monkeypatch):
    monkeypatch.delenv(COLD_TRIALS, raising=False)
    endless = ["--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=100000", *TINY_MODELS["Seq2Seq"]]
    launcher = Launcher(jobs=2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        trials = [pool.submit(launcher.run, worker_argv(Path("logs"), Path(f"trial_{i}"), 0, endless)) for i in (0, 1)]
        while len(launcher.running) < 2:
            time.sleep(0.05)
        assert all(isinstance(job, WarmJob) for job in launcher.running)
        launcher.stop()  # what Ctrl-C does
        for trial in trials:
            with pytest.raises(CancelledError):
                trial.result(timeout=60)
    assert not launcher.running
