"""The search phase of `nlparena compare`: every run's study (`search.py`) gets its budget of trials, `--jobs` at a
time, each a fit of the run with the sampled setting in its own process (`logs/compare/NAME/RUN/search/trial_K/`),
reporting its validation values to this process (`search_channel.py`), which reports them to Optuna and answers
whether the trial is pruned. Then each run keeps the setting of its best trial by validation (`chosen`), which the
comparison's seeds train and test."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nlparena.compare.config import MARKER, Comparison, Run, Trial, next_version
from nlparena.compare.jobs import Launcher, worker_argv
from nlparena.compare.local_jobs import Outcome
from nlparena.compare.progress import Progress, failure_reason
from nlparena.compare.search import RunStudy, hidden_password, open_storage
from nlparena.compare.search_channel import ReportReader

POLL_SECONDS = 0.05  # how often a running trial's reports are read
WAIT_SECONDS = 2.0  # how often a process whose budget others are finishing looks again


def default_storage(comparison: Comparison) -> str:
    """`sqlite:///logs/compare/NAME/search.db` (its folder made)."""
    comparison.log_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{comparison.log_dir / 'search.db'}"


def open_studies(comparison: Comparison, url: str, modes: dict[str, str], shared: bool = False) -> dict[str, RunStudy]:
    """Each run's study (`COMPARISON/RUN`) in the storage at `url`, made or continued; `modes`: run -> "max"|"min";
    `shared`: a storage other compare processes may use too (see `search.sampler_of`)."""
    assert comparison.search is not None
    storage = open_storage(url)
    return {
        run.name: RunStudy.open(
            storage, study_name(comparison, run), modes[run.name], comparison.search, comparison.space_of(run), shared
        )
        for run in comparison.runs
    }


def existing_studies(comparison: Comparison, url: str | None) -> dict[str, RunStudy]:
    """For `--report-only`: the runs' studies that exist in the storage (none made)."""
    assert comparison.search is not None
    url = url or default_storage(comparison)
    storage = open_storage(url)
    found = {
        run.name: RunStudy.existing(storage, study_name(comparison, run), comparison.search, comparison.space_of(run))
        for run in comparison.runs
    }
    return {name: study for name, study in found.items() if study is not None}


def study_name(comparison: Comparison, run: Run) -> str:
    return f"{comparison.name}/{run.name}"


class Searcher:
    """Runs the studies' trials, `jobs` at a time; every call to a study under one lock."""

    def __init__(self, comparison: Comparison, studies: dict[str, RunStudy], launcher: Launcher, local: bool) -> None:
        self.comparison, self.studies, self.launcher = comparison, studies, launcher
        self.pid = os.getpid() if local else 0  # a trial on another machine cannot look for this process
        self.lock = threading.Lock()
        runs = {run.name: run for run in comparison.runs}
        self.runs = [(runs[name], study) for name, study in studies.items()]
        counted = (TrialState.COMPLETE, TrialState.PRUNED)
        left = sum(max(0, study.budget - len(study.trials(counted))) for study in studies.values())
        self.progress = Progress(left, launcher.jobs)

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=self.launcher.jobs, thread_name_prefix="search") as pool:
            futures = [pool.submit(self.work) for _ in range(self.launcher.jobs)]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # interrupted (Ctrl-C): stop the running trials
                self.launcher.stop()
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def work(self) -> None:
        """One worker's loop: run the next trial any study asks for, wait while others finish a budget, else end."""
        while True:
            with self.lock:
                task = self.next_task()
            if task is None:
                return
            if task == "wait":
                time.sleep(WAIT_SECONDS)
                continue
            self.run_one(*task)

    def next_task(self) -> tuple[Run, RunStudy, optuna.Trial] | str | None:
        waiting = False
        for run, study in self.runs:
            ask = study.next()
            if ask.trial is not None:
                return run, study, ask.trial
            waiting = waiting or ask.wait
        return "wait" if waiting else None

    def run_one(self, run: Run, study: RunStudy, optuna_trial: optuna.Trial) -> None:
        """Run one search trial in its own process while a thread answers its reports; tell the study how it ended."""
        setting = tuple((key, optuna_trial.params[key]) for key, _ in study.space)
        trial = Trial.searching(run, optuna_trial.number, setting)
        folder = self.comparison.log_dir / trial.folder
        version = next_version(folder)
        version_dir = folder / f"version_{version}"
        with self.lock:
            optuna_trial.set_user_attr("log_dir", str(version_dir))
        argv = worker_argv(self.comparison.log_dir, trial.folder, version, self.comparison.fit_args(trial), self.pid)
        self.progress.started(f"[search] {trial.label} ({trial.setting_name}): running ({version_dir})")
        done, start = threading.Event(), time.perf_counter()
        answering = threading.Thread(target=self.answer, args=(study, optuna_trial, ReportReader(version_dir), done))
        answering.start()
        try:
            outcome = self.launcher.run(argv)
        except BaseException:
            done.set()
            answering.join()
            with self.lock:
                study.finish(optuna_trial, TrialState.FAIL, "interrupted")
            raise
        done.set()
        answering.join()
        state, reason = state_of(outcome, version_dir)
        with self.lock:
            values = list(study.values.get(optuna_trial.number, []))
            study.finish(optuna_trial, state, reason)
        seconds = time.perf_counter() - start
        line = ended_line(state, reason, values, study, seconds, version_dir)
        self.progress.ended(state != TrialState.FAIL, seconds, f"[search] {trial.label}: {line}")

    def answer(self, study: RunStudy, trial: optuna.Trial, reader: ReportReader, done: threading.Event) -> None:
        """Until the trial's process has ended: report each value it reports, and answer whether it is pruned."""
        while True:
            finished = done.is_set()
            for report in reader.new_reports():
                try:
                    with self.lock:
                        prune = study.report(trial, int(report["step"]), report["value"])
                except Exception as err:  # the trial must get its answer whatever the storage did: it waits for it
                    print(f"[search] trial {trial.number}: not reported to Optuna ({err}); not pruned", flush=True)
                    prune = False
                reader.answer(int(report["step"]), prune)
            if finished:
                return
            with self.lock:
                study.mark_alive(trial)
            done.wait(POLL_SECONDS)


def state_of(outcome: Outcome, version_dir: Path) -> tuple[TrialState, str]:
    """How a search trial's process ended, as Optuna's state, with why it failed."""
    marker = version_dir / MARKER
    if outcome.exit_code == 0 and marker.is_file():
        status = json.loads(marker.read_text()).get("status")
        return (TrialState.PRUNED, "") if status == "pruned" else (TrialState.COMPLETE, "")
    return TrialState.FAIL, failure_reason(outcome)


def ended_line(state: TrialState, reason: str, values: list[float], study: RunStudy, seconds: float, log: Path) -> str:
    """`finished in 12 s, best 0.912`, `pruned after 2 validations (last 0.120)`, or `failed: <why> (log: ...)`."""
    if state == TrialState.FAIL:
        return f"failed: {reason} (after {seconds:.0f} s; log: {log / 'trial.log'})"
    if state == TrialState.PRUNED:
        last = f", last {values[-1]:.3f}" if values else ""
        return f"pruned after {len(values)} validation{'s' if len(values) != 1 else ''}{last} ({seconds:.0f} s)"
    return f"finished in {seconds:.0f} s, best {study.better(values):.3f}" if values else f"finished in {seconds:.0f} s"


def search(
    comparison: Comparison, infos: dict[str, dict[str, str]], launcher: Launcher, url: str | None
) -> dict[str, RunStudy]:
    """Run every run's search to its budget (continuing the studies in the storage), then fill `comparison.chosen`
    with each run's best setting by validation; SystemExit if a run has no finished trial. Returns the studies."""
    assert comparison.search is not None
    shared = url is not None  # --storage: a database that compare processes on other machines may share
    url = url or default_storage(comparison)
    studies = open_studies(comparison, url, {name: info["headline_mode"] for name, info in infos.items()}, shared)
    search = comparison.search
    print(
        f"search: {search.trials or 'a grid of'} trials per run (sampler {search.sampler}, pruner {search.pruner}); "
        f"studies in {hidden_password(url)}",
        flush=True,
    )
    Searcher(comparison, studies, launcher, local=launcher.cluster is None).run()
    choose(comparison, studies, url)
    return studies


def choose(comparison: Comparison, studies: dict[str, RunStudy], url: str) -> None:
    """Each run's best setting by validation into `comparison.chosen`; SystemExit naming the runs that have none."""
    missing = []
    for name, study in studies.items():
        best = study.best()
        if best is None:
            missing.append(name)
        else:
            comparison.chosen[name] = best
    if missing:
        raise SystemExit(
            f"search: no trial of {', '.join(missing)} finished (studies in {hidden_password(url)}); "
            f"see the trial logs under {comparison.log_dir}/RUN/search/"
        )
