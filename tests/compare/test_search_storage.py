"""Compare processes that share a search study: the races between them, one at a time, and a new PostgreSQL
database that two of them open at the same moment."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from optuna.storages._rdb import models
from optuna.trial import TrialState

from nlparena.compare import search
from nlparena.compare.search import HOST, STALE_SECONDS, RunStudy, open_storage
from nlparena.compare.search_config import Search, SearchEntry
from nlparena.errors import ConfigError

RUN = "a"  # the comparison's one run: its study is `NAME/a`
LR = {"optimizer.init_args.lr": {"low": 1.0e-5, "high": 1.0e-1, "log": True}}


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
