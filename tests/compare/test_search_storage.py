"""Compare processes that share a search study: the races between them, one at a time."""

from __future__ import annotations

import time
from pathlib import Path

from optuna.trial import TrialState

from nlparena.compare import search
from nlparena.compare.search import STALE_SECONDS, RunStudy
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
