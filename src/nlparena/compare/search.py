"""A run's search on Optuna: one study per run (`COMPARISON/RUN`) in one storage, SQLite
(`logs/compare/NAME/search.db`) by default or any database Optuna supports (`--storage URL`).

The `nlparena compare` process owns its studies through Optuna's ask-and-tell interface: it asks for a trial, hands
it to one of its `--jobs` workers, reports the worker's validation values to the study (the pruner's input) and
tells the study how the trial ended. So a SQLite file has one writer (several processes writing one SQLite file
raise "database is locked"), and compare processes on several machines share one study through a server database.

The budget of a run is `trials` finished or pruned trials. A trial is asked only while the finished, pruned and
running trials fall short of it; a trial asked at the same moment by another compare process beyond the budget is
told failed at once, unrun, and marked `unused` (its number comes after the budget's last). A trial whose compare
process died (its pid on this machine, else no sign of life for STALE_SECONDS) is told failed, and the budget
samples another in its place.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from nlparena.compare.search_channel import process_alive
from nlparena.compare.search_config import Choice, Range, Search, Space
from nlparena.errors import ConfigError

STALE_SECONDS = 600.0  # a running trial whose compare process gave no sign of life for this long is taken as lost
ALIVE_SECONDS = 30.0  # how often a compare process marks its running trials alive
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what the budget counts
OPEN_ATTEMPTS = 3  # opening a new database that other compare processes are setting up at the same moment
OPEN_PAUSE = 0.2  # seconds before the second attempt (twice that before the third)
HOST = socket.gethostname()

optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per trial: the compare process prints its own


def distribution(dim: Range | Choice) -> BaseDistribution:
    if isinstance(dim, Choice):
        return CategoricalDistribution(dim.values)
    if dim.is_int:
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return FloatDistribution(float(dim.low), float(dim.high), log=dim.log)


class AskedGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for ask-and-tell: its `after_trial` stops `study.optimize` once the grid is done, and
    `Study.stop` raises outside an `optimize` loop; here the budget (the grid's size) ends the search."""

    def after_trial(self, study: Any, trial: Any, state: TrialState, values: Any) -> None:
        return None


def sampler_of(search: Search, space: Space, shared: bool = False) -> optuna.samplers.BaseSampler:
    """The search's sampler; `shared`: the study is in a database other compare processes may use too, where each
    process draws from a seed of its own (with one seed, every process would sample the same settings)."""
    seed = None if shared else search.seed
    if search.sampler == "grid":
        grid = {key: list(dim.values) for key, dim in space if isinstance(dim, Choice)}
        return AskedGridSampler(grid, seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # a third of the budget sampled at random first (Optuna's default is 10, the whole of a small budget)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, (search.trials or 0) // 3)))


def pruner_of(search: Search) -> optuna.pruners.BasePruner:
    """The search's pruner; no trial is stopped before its `prune_after`-th validation has been reported (an early
    exact match of 0 says little: warmup and low learning rates start there)."""
    if search.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=search.prune_after + 1 if search.prune_after else "auto"
        )
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=search.prune_after)
    return optuna.pruners.NopPruner()


def hidden_password(url: str) -> str:
    """`postgresql://user:***@host/db`: a storage URL as the terminal may show it."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at `url`; one ConfigError line naming the URL (its password hidden) if it cannot be opened."""
    try:
        return _rdb_storage(url)
    except Exception as err:  # a bad URL, a missing driver, a server that refuses: all the user's to fix
        cause = str(err).replace(url, hidden_password(url)).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--storage {hidden_password(url)}: Optuna cannot open it ({cause})") from None


def _rdb_storage(url: str) -> optuna.storages.RDBStorage:
    for attempt in range(OPEN_ATTEMPTS - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # compare processes started together on a new database: PostgreSQL refuses the second of two concurrent
            # CREATE TABLEs of the same name (IntegrityError while the first's is uncommitted, ProgrammingError
            # "already exists" once it is: Optuna's tables, its version row, Alembic's `alembic_version`); opening it
            # again, once the first has finished, finds the first's
            time.sleep(OPEN_PAUSE * (attempt + 1))
    return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))


def _engine_kwargs(url: str) -> dict[str, Any]:
    # SQLite: wait for a lock instead of failing at once (the report of another command reading it)
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


@dataclass
class Ask:
    """What a search asks of its caller: run this trial, wait (another process's trials fill the budget), or stop."""

    trial: optuna.Trial | None = None
    wait: bool = False


class RunStudy:
    """One run's study: asks trials within the budget, takes the reports of the trials it runs, tells how they ended.
    Not thread-safe: the caller holds one lock around every call."""

    def __init__(self, study: optuna.Study, search: Search, space: Space) -> None:
        self.study, self.search, self.space = study, search, space
        self.budget = search.budget(space)
        self.distributions = {key: distribution(dim) for key, dim in space}
        self.values: dict[int, list[float]] = {}  # trial number -> the validation values it reported
        self.alive_at: dict[int, float] = {}
        self.seen_at: dict[int, float] = {}  # trial number -> when this process first saw it running (fail_lost)
        self.failures = 0  # trials of this process that failed: a run whose every trial fails stops

    @classmethod
    def open(
        cls, storage: Any, name: str, direction: str, search: Search, space: Space, shared: bool = False
    ) -> RunStudy:
        """The study `name` in `storage`, made or continued; `direction`: the headline metric's "max" or "min";
        `shared`: see `sampler_of`."""
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize" if direction == "max" else "minimize",
            sampler=sampler_of(search, space, shared),
            pruner=pruner_of(search),
            load_if_exists=True,
        )
        return cls(study, search, space)

    @classmethod
    def existing(cls, storage: Any, name: str, search: Search, space: Space) -> RunStudy | None:
        """The study `name` in `storage` as it is, None if there is none (nothing is made)."""
        try:
            return cls(optuna.load_study(study_name=name, storage=storage), search, space)
        except KeyError:
            return None

    @property
    def better(self) -> Any:
        """`max` or `min`: what picks the best of the headline metric's values in the study's direction."""
        return max if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else min

    def trials(self, states: tuple[TrialState, ...]) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get("unused")]

    def next(self) -> Ask:
        """The next trial to run, or a wait, or the end of the search (the budget is done)."""
        self.fail_lost()
        counted = len(self.trials(COUNTED))
        if counted >= self.budget or self.failures >= self.budget:
            return Ask()
        if counted + len(self.trials((TrialState.RUNNING, TrialState.WAITING))) >= self.budget:
            return Ask(wait=True)
        trial = self.study.ask(self.distributions)
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("alive_at", time.time())
        ahead = [t for t in self.trials((*COUNTED, TrialState.RUNNING, TrialState.WAITING)) if t.number < trial.number]
        if len(ahead) >= self.budget:  # another process asked within the same moment: over the budget
            trial.set_user_attr("unused", True)
            self.study.tell(trial, state=TrialState.FAIL)
            return Ask(wait=True)
        self.values[trial.number] = []
        self.alive_at[trial.number] = time.time()
        return Ask(trial)

    def report(self, trial: optuna.Trial, step: int, value: float | None) -> bool:
        """Give the pruner a validation value of `trial` (None: not finite); whether the trial is pruned."""
        if value is None:
            return True  # a diverged run: nothing to learn from training it on
        self.values[trial.number].append(value)
        trial.report(value, step)
        self.mark_alive(trial)
        return bool(trial.should_prune())  # numpy's bool from some pruners

    def mark_alive(self, trial: optuna.Trial) -> None:
        if time.time() - self.alive_at.get(trial.number, 0.0) >= ALIVE_SECONDS:
            self.alive_at[trial.number] = time.time()
            with contextlib.suppress(UpdateFinishedTrialError):  # another process took it as lost: it ends unrecorded
                trial.set_user_attr("alive_at", time.time())

    def finish(self, trial: optuna.Trial, state: TrialState, reason: str = "") -> None:
        """Tell the study how `trial` ended: finished (its best validation value), pruned, or failed."""
        values = self.values.pop(trial.number, [])
        if state == TrialState.COMPLETE and not values:
            state, reason = TrialState.FAIL, reason or "no validation value reported"
        if state == TrialState.FAIL:
            self.failures += 1
        best = self.better(values, default=None)
        # a trial another process took as lost (silent for STALE_SECONDS) is failed already: its result is dropped
        with contextlib.suppress(UpdateFinishedTrialError):
            if reason:
                trial.set_user_attr("error", reason[:300])
            self.study.tell(trial, best if state == TrialState.COMPLETE else None, state=state, skip_if_finished=True)

    def fail_lost(self) -> None:
        """Tell failed the running trials whose compare process is gone: dead on this machine, or silent too long."""
        for trial in self.trials((TrialState.RUNNING,)):
            attrs = trial.user_attrs
            mine = attrs.get("host") == HOST and attrs.get("pid") == os.getpid()
            dead = attrs.get("host") == HOST and not process_alive(int(attrs.get("pid", 0)))
            # a trial another process has just asked has no marks yet: silent only if it stays unmarked that long
            seen_at = self.seen_at.setdefault(trial.number, time.time())
            silent = time.time() - float(attrs.get("alive_at", seen_at)) > STALE_SECONDS
            if not mine and (dead or silent):  # another compare process may have told it failed meanwhile
                self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)

    def trials_in(self, state: str) -> list[optuna.trial.FrozenTrial]:
        """The trials in state `state` ("COMPLETE", "PRUNED", ...)."""
        return self.trials((TrialState[state],))

    def best_value(self) -> float | None:
        """The best validation value of a finished trial, None if none finished."""
        return self.better((t.value for t in self.trials((TrialState.COMPLETE,)) if t.value is not None), default=None)

    def best(self) -> tuple[tuple[str, Any], ...] | None:
        """The setting of the best finished trial by validation (its params in the space's order), None if none."""
        finished = self.trials((TrialState.COMPLETE,))
        if not finished:
            return None
        best = self.better(finished, key=lambda t: t.value)  # the first of equals
        return tuple((key, best.params[key]) for key, _ in self.space if key in best.params)
