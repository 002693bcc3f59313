"""The search's studies in real storage, with real processes: two `nlparena compare` processes (as on two machines,
each with its own log folder) share one PostgreSQL study to exactly its budget, each trial run by one of them; a
compare process killed (`kill -9`) during a trial leaves it RUNNING, and the next run tells it failed and samples
another in its place; a trial whose compare process is gone ends itself at its next validation. And the races
between compare processes that share a study, one at a time."""

from __future__ import annotations

import contextlib
import csv
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.storages._rdb import models
from optuna.trial import TrialState

from nlparena.compare import search
from nlparena.compare.search import HOST, STALE_SECONDS, RunStudy, open_storage
from nlparena.compare.search_config import Search, SearchEntry
from nlparena.errors import ConfigError
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL

REPOSITORY = Path(__file__).parents[2]
RUN = "a"  # the comparison's one run: its study is `NAME/a`
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
SHARED_ARGS = ["--data=Copy", *TINY_DATA, *QUIET, *TINY_MODEL, "--trainer.max_epochs=1"]
LR = {"optimizer.init_args.lr": {"low": 1.0e-5, "high": 1.0e-1, "log": True}}
COMPARE_SECONDS = 300  # one tiny comparison on a loaded 2-core machine takes well under a minute


def comparison(name: str, trials: int, search_epochs: int) -> dict[str, Any]:
    """A one-run comparison whose search tunes the learning rate with `trials` trials of `search_epochs` epochs."""
    searching = {"trials": trials, "sampler": "tpe", "pruner": "median", "space": LR}
    searching["args"] = [f"--trainer.max_epochs={search_epochs}"]
    return {"name": name, "seeds": [0], "shared": {"args": SHARED_ARGS}, "search": searching, "runs": [{"name": RUN}]}


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_compare(folder: Path, *args: str) -> subprocess.Popen:
    """`nlparena compare -c search.yaml ARGS` in `folder` (its logs/ there), in a process group of its own (it, its
    forkserver and its trials), one thread per trial; its output in `folder/compare.out`."""
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "nlparena", "compare", "-c", "search.yaml", *args]
    with open(folder / "compare.out", "ab") as out:
        return subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def output(folder: Path) -> str:
    return (folder / "compare.out").read_text(errors="replace")[-4000:]


def group_members(pgid: int) -> list[int]:
    """The processes of group `pgid` still running (a zombie, dead but not yet waited for, is not)."""
    assert Path("/proc/self/stat").is_file(), "reads the processes from /proc (Linux)"
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after `pid (command)`: state ppid pgrp ...
        except (OSError, IndexError):
            continue  # ended meanwhile
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            members.append(int(stat.parent.name))
    return members


def kill_group(process: subprocess.Popen) -> None:
    """Whatever is left of a compare process's group (a test that failed half-way leaves no trial running)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(condition: Callable[[], Any], seconds: float, what: str, folder: Path) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        assert time.monotonic() < deadline, f"no {what} after {seconds:.0f} s; compare's output:\n{output(folder)}"
        time.sleep(0.05)
    return found


def first_report(folder: Path, name: str) -> Path | None:
    """`search_reports.jsonl` of the first search trial once it holds a whole line (its first validation)."""
    found = glob.glob(str(folder / "logs/compare" / name / RUN / "search/trial_0/version_*/search_reports.jsonl"))
    return Path(found[0]) if found and Path(found[0]).read_text().endswith("\n") else None


def trial_folders(folder: Path, name: str) -> set[int]:
    """The numbers of the search trials that ran in this log folder (`trial_K`)."""
    trials = folder / "logs/compare" / name / RUN / "search"
    return {int(path.name.removeprefix("trial_")) for path in trials.glob("trial_*")}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def chosen_in_report(report: Path) -> str:
    """The `chosen setting` cell of the run's row in report.md's search table."""
    lines = report.read_text().split("## Search", 1)[1].splitlines()
    header = next(line for line in lines if "chosen setting" in line)
    column = [cell.strip() for cell in header.split("|")].index("chosen setting")
    row = next(line for line in lines if line.startswith(f"| `{RUN}` |"))
    return row.split("|")[column].strip()


# -- a throwaway PostgreSQL server --------------------------------------------------------------------------------


def postgres_binaries() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's `/usr/lib/postgresql/<version>/bin` (the newest)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent  # a link on PATH: the folder that holds pg_ctl and postgres too
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    newest = max(found, key=lambda p: [int(n) for n in Path(p).parts[4].split(".") if n.isdigit()], default=None)
    return Path(newest).parent if newest else None


def server_account() -> pwd.struct_passwd | None:
    """Who runs the server: this user, or (the server refuses to run as root) `postgres`, else `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root, with neither a `postgres` nor a `nobody` user to run PostgreSQL as")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary folder, on a free port, trusting local connections; the URL of an
    empty database on it. Stopped (and its folder removed) at the end."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb is neither on PATH nor under /usr/lib/postgresql/*/bin")
    account = server_account()
    # not under pytest's tmp_path: that is private to this user (the server may run as another), and its long path
    # would not fit a Unix socket's name
    folder = Path(tempfile.mkdtemp(prefix="nlparena-pg-"))
    user: dict[str, Any] = {}
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
        user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def as_server(*command: str | Path) -> None:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, **user)
        assert done.returncode == 0, f"{' '.join(map(str, command))}: {done.stdout}{done.stderr}"

    data, port = folder / "data", free_port()
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    try:
        as_server(binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust")
        pg_ctl = (binaries / "pg_ctl", "-D", data)
        as_server(*pg_ctl, "-o", f"-k {folder} -p {port} -h 127.0.0.1", "-l", folder / "server.log", "start", "-w")
        try:
            engine = sqlalchemy.create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")  # CREATE DATABASE
            with engine.connect() as connection:
                connection.exec_driver_sql("CREATE DATABASE nlparena")
            engine.dispose()
            yield f"{url}/nlparena"
        finally:
            as_server(*pg_ctl, "stop", "-m", "immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=f"{name}/{RUN}", storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


# -- a study's bookkeeping, two compare processes as two RunStudy objects on one storage -----------------------------


def two_processes(tmp_path: Path, shared: bool = False) -> tuple[RunStudy, RunStudy]:
    searching = Search.of(SearchEntry(space=LR, trials=4))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    space = searching.space_of((), RUN)
    return tuple(RunStudy.open(url, "s/a", "max", searching, space, shared) for _ in range(2))


def test_compare_processes_sharing_a_study_do_not_sample_the_same_settings(tmp_path):
    ours, theirs = two_processes(tmp_path, shared=True)
    assert ours.next().trial.params != theirs.next().trial.params
    # a study of one process (the default storage): the sampler's seed makes its settings the same every time
    (tmp_path / "again").mkdir()
    first, second = (study.next().trial.params for study in two_processes(tmp_path / "again"))
    assert first == second


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


def test_a_version_table_that_another_compare_process_made_a_moment_ago_is_opened_again(monkeypatch):
    # the other process committed `alembic_version` between our check for it and our CREATE TABLE
    taken = sqlalchemy.exc.ProgrammingError(
        "CREATE TABLE alembic_version", {}, Exception('relation "alembic_version" already exists')
    )
    opened: list[str] = []

    def rdb_storage(url: str, **kwargs: Any) -> str:
        opened.append(url)
        if len(opened) == 1:
            raise taken
        return "storage"

    monkeypatch.setattr(search.optuna.storages, "RDBStorage", rdb_storage)
    monkeypatch.setattr(search, "OPEN_PAUSE", 0.0)
    assert open_storage("postgresql://db") == "storage" and len(opened) == 2


def test_a_storage_that_still_fails_on_the_last_attempt_is_one_line_naming_it(monkeypatch):
    def rdb_storage(url: str, **kwargs: Any) -> None:
        raise sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("permission denied for schema public"))

    monkeypatch.setattr(search.optuna.storages, "RDBStorage", rdb_storage)
    monkeypatch.setattr(search, "OPEN_PAUSE", 0.0)
    with pytest.raises(ConfigError, match=r"--storage postgresql://u:\*\*\*@db/x: .*permission denied") as err:
        open_storage("postgresql://u:secret@db/x")
    assert "secret" not in str(err.value) and "\n" not in str(err.value)


# -- real servers and processes --------------------------------------------------------------------------------------


def test_a_new_database_that_another_compare_process_is_setting_up_opens(postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)
    opened: dict[str, Any] = {}

    def open_it() -> None:
        try:
            opened["storage"] = open_storage(postgres_url)
        except ConfigError as err:
            opened["error"] = err

    try:
        with engine.connect() as other:  # another compare process, making Optuna's tables at this moment
            making = other.begin()
            models.BaseModel.metadata.create_all(other)
            opening = threading.Thread(target=open_it)
            opening.start()
            time.sleep(1)  # our CREATE TABLE waits for the other's, then finds the name taken
            making.commit()
        opening.join(timeout=60)
        assert "storage" in opened, opened.get("error")
        opened["storage"].engine.dispose()
    finally:
        engine.dispose()


def test_two_compare_processes_share_one_postgresql_study_to_exactly_its_budget(tmp_path, postgres_url):
    budget = 4
    folders = [tmp_path / "one", tmp_path / "two"]  # as on two machines: a log folder each, one study
    for folder in folders:
        write_config(folder, comparison("shared", budget, search_epochs=2))
    processes = [start_compare(folder, "--jobs", "1", "--storage", postgres_url) for folder in folders]
    try:
        for process, folder in zip(processes, folders, strict=True):
            assert process.wait(timeout=COMPARE_SECONDS) == 0, output(folder)
    finally:
        for process in processes:
            kill_group(process)

    trials = trials_of(postgres_url, "shared")
    used = [trial for trial in trials if not trial.user_attrs.get("unused")]
    # a trial asked beyond the budget by the other process at the same moment: failed at once, never run
    assert all(trial.state == TrialState.FAIL for trial in trials if trial.user_attrs.get("unused"))
    assert len(used) == budget and all(trial.state in COUNTED for trial in used), "every trial counted, none lost"
    # no setting sampled twice (the two processes' samplers do not draw the same numbers)
    assert len({trial.params["optimizer.init_args.lr"] for trial in used}) == budget
    ran = [trial_folders(folder, "shared") for folder in folders]
    assert not ran[0] & ran[1], "no trial ran in both processes"
    assert ran[0] | ran[1] == {trial.number for trial in used}
    for trial in used:  # a relative path: under the log folder of the process that ran it, and of no other
        assert [(folder / trial.user_attrs["log_dir"]).is_dir() for folder in folders].count(True) == 1
        assert trial.user_attrs["pid"] in {process.pid for process in processes}
    # both took the study's best trial by validation, the same setting
    summaries = [read_rows(folder / "logs/compare/shared/summary.csv")[0]["setting"] for folder in folders]
    assert summaries[0] == summaries[1]
    chosen = [chosen_in_report(folder / "logs/compare/shared/report.md") for folder in folders]
    assert chosen[0] == chosen[1] != "none"


def test_a_compare_killed_during_a_trial_is_rerun_to_its_budget_with_the_killed_trial_failed(tmp_path):
    budget = 2
    write_config(tmp_path, comparison("killed", budget, search_epochs=3))
    first = start_compare(tmp_path, "--jobs", "1")
    try:
        wait_for(lambda: first_report(tmp_path, "killed"), COMPARE_SECONDS, "first validation of trial 0", tmp_path)
        os.killpg(first.pid, signal.SIGKILL)  # the compare process, its forkserver and its running trial
        first.wait()
        wait_for(lambda: not group_members(first.pid), 10, "end of every process of the killed group", tmp_path)
    finally:
        kill_group(first)
    url = f"sqlite:///{tmp_path / 'logs/compare/killed/search.db'}"
    assert [trial.state for trial in trials_of(url, "killed")] == [TrialState.RUNNING], "trial 0 was running"

    rerun = start_compare(tmp_path, "--jobs", "1")
    try:
        assert rerun.wait(timeout=COMPARE_SECONDS) == 0, output(tmp_path)
    finally:
        kill_group(rerun)

    trials = [trial for trial in trials_of(url, "killed") if not trial.user_attrs.get("unused")]
    assert trials[0].state == TrialState.FAIL  # told failed: its compare process is gone
    assert [trial.number for trial in trials if trial.state in COUNTED] == list(range(1, budget + 1))
    assert len(trials) == budget + 1  # sampled again in its place, nothing more
    rows = read_rows(tmp_path / "logs/compare/killed/search.csv")
    assert [(row["trial"], row["state"]) for row in rows] == [("0", "failed"), ("1", "finished"), ("2", "finished")]
    assert (tmp_path / "logs/compare/killed/report.md").is_file()


def test_a_trial_whose_compare_process_is_killed_ends_at_its_next_validation(tmp_path):
    # 200 epochs: the trial would train for minutes if it did not look for its compare process
    write_config(tmp_path, comparison("orphan", 2, search_epochs=200))
    compare = start_compare(tmp_path, "--jobs", "1")
    try:
        wait_for(lambda: first_report(tmp_path, "orphan"), COMPARE_SECONDS, "first validation of trial 0", tmp_path)
        os.kill(compare.pid, signal.SIGKILL)  # the compare process alone: its trial and forkserver live on
        compare.wait()  # as its shell would: a zombie would still look alive to the trial
        wait_for(lambda: not group_members(compare.pid), 20, "end of the orphaned trial and forkserver", tmp_path)
        log = next((tmp_path / "logs/compare/orphan" / RUN / "search/trial_0").glob("version_*/trial.log"))
        assert f"no answer from the compare process (pid {compare.pid})" in log.read_text()
    finally:
        kill_group(compare)
