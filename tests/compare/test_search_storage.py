"""Compare processes that share a search study: the races between them, one at a time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from optuna.trial import TrialState

from nlparena.compare import search
from nlparena.compare.search import HOST, STALE_SECONDS, RunStudy
from nlparena.compare.search_config import Search, SearchEntry

RUN = "a"  # the comparison's one run: its study is `NAME/a`
LR = {"optimizer.init_args.lr": {"low": 1.0e-5, "high": 1.0e-1, "log": True}}


# -- a study's bookkeeping, two compare processes as two RunStudy objects on one storage -----------------------------


def two_processes(tmp_path: Path) -> tuple[RunStudy, RunStudy]:
    searching = Search.of(SearchEntry(space=LR, trials=4))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    space = searching.space_of((), RUN)
    return tuple(RunStudy.open(url, "s/a", "max", searching, space) for _ in range(2))


def test_a_trial_another_compare_process_has_just_asked_is_not_taken_as_lost(tmp_path, monkeypatch):
    ours, theirs = two_processes(tmp_path)
    theirs.study.ask()  # RUNNING from here; `next` marks it (host, pid, alive_at) a moment later
    ours.fail_lost()
    assert [trial.state for trial in ours.study.get_trials()] == [TrialState.RUNNING]
    # one whose process died before it could mark it: lost once it has been seen unmarked for STALE_SECONDS
    now = time.time()
    monkeypatch.setattr(search.time, "time", lambda: now + STALE_SECONDS + 1)
    ours.fail_lost()
    assert [trial.state for trial in ours.study.get_trials()] == [TrialState.FAIL]


def test_a_lost_trial_that_another_compare_process_failed_first_is_not_an_error(tmp_path, monkeypatch):
    ours, theirs = two_processes(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a compare process of this machine that has died
    lost = ours.study.ask()
    lost.set_user_attr("host", HOST)
    lost.set_user_attr("pid", gone.pid)
    seen = theirs.trials((TrialState.RUNNING,))  # both see it lost at the same moment ...
    ours.fail_lost()  # ... one tells it failed first
    monkeypatch.setattr(theirs, "trials", lambda states: seen)
    theirs.fail_lost()
    assert [trial.state for trial in theirs.study.get_trials()] == [TrialState.FAIL]
