"""Where a comparison's trials run: local processes (`--executor local`, `--jobs N` at a time) or jobs of a cluster
scheduler through submitit (`--executor slurm`; `submitit-local` runs the same path as local processes).

Every trial is the same worker, `python -m nlparena.compare.worker ARGV`, whatever runs it: locally in a process
forked from a warm server (see `local_jobs`), through submitit as that command. Locally, each of N jobs
gets its share of the machine: one GPU each (`CUDA_VISIBLE_DEVICES`) where there are GPUs, else cores // N torch
threads (`OMP_NUM_THREADS`), so that N runs never fight over the same cores (two runs that each take every core
of a 2-core machine run more than ten times slower). Whatever runs it, a trial's stdout and stderr go to its log
file, `trial.log` in its version folder (`trial_log`).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Protocol

from nlparena.compare.config import ERROR_LINES, TRIAL_LOG
from nlparena.compare.local_jobs import (
    LocalJob,
    Outcome,
    WarmJob,
    cold_trials,
    log_tail,
    open_log,
    start_server,
    worker_command,
)
from nlparena.errors import ConfigError

EXECUTORS = ("local", "slurm", "submitit-local")


class Job(Protocol):
    def outcome(self) -> Outcome:
        """Wait for the job to end: how it ended."""
        ...

    def kill(self) -> None: ...


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES's, else every device torch counts."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device for device in visible.split(",") if device.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def default_jobs() -> int:
    """One job per visible GPU; 1 on CPU (a run already uses every core)."""
    return max(1, len(visible_gpus()))


def job_environment(slot: int, jobs: int) -> dict[str, str]:
    """The environment of the job in `slot` (0 .. jobs - 1): its GPU, or its share of the cores."""
    env = dict(os.environ)
    if jobs == 1:
        return env
    gpus = visible_gpus()
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    elif "OMP_NUM_THREADS" not in os.environ:  # a thread count the user chose stands
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def run_command(command: list[str], env_update: dict[str, str], log: Path) -> Outcome:
    """What a submitit job runs: the worker command, on the node, with this process's environment plus
    `env_update`; its stdout and stderr go to `log` (the trial's, on the shared file system), whose tail is
    returned."""
    fd = open_log(log)
    try:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT, env={**os.environ, **env_update}
        )
    finally:
        os.close(fd)
    return Outcome(proc.wait(), log_tail(log))


class SubmititJob:
    """A trial submitted to a submitit executor (SLURM, or its local executor)."""

    def __init__(self, executor: Any, argv: list[str]) -> None:
        self.job = executor.submit(run_command, worker_command(argv), {"PYTHONUNBUFFERED": "1"}, trial_log(argv))

    def outcome(self) -> Outcome:
        try:
            return self.job.result()
        except Exception as err:  # the job died before the worker could report (killed, out of time, ...)
            lines = [line for line in str(err).splitlines() if line.strip()]
            return Outcome(-1, lines[-ERROR_LINES:] or [type(err).__name__])

    def kill(self) -> None:
        self.job.cancel(check=False)


class Launcher:
    """Starts a trial's process (a local one with its slot's share of the machine, or a submitit job) and waits for
    it to end; `stop` kills the running ones and starts no other (Ctrl-C: no trial goes on writing after the command
    ended)."""

    def __init__(self, jobs: int, cluster: Any = None) -> None:
        self.jobs, self.cluster = jobs, cluster
        self.slots: queue.SimpleQueue[int] = queue.SimpleQueue()  # 0 .. jobs - 1: a GPU, or a share of the cores
        for slot in range(jobs):
            self.slots.put(slot)
        self.running: set[Job] = set()
        self.lock = threading.Lock()
        self.stopped = False
        self.cold = cold_trials()
        if cluster is None and not self.cold:
            start_server()  # before the trials' threads: it starts from this process's environment

    def run(self, argv: list[str]) -> Outcome:
        """Run the worker with `argv` (`worker_argv`) when a slot is free; how it ended."""
        slot = self.slots.get()
        try:
            with self.lock:
                if self.stopped:
                    raise CancelledError
                job = self._start(argv, slot)
                self.running.add(job)
            try:
                outcome = job.outcome()
            finally:
                with self.lock:
                    self.running.discard(job)
        finally:
            self.slots.put(slot)
        if self.stopped:
            raise CancelledError  # killed by `stop`: not a failure of the trial's own
        return outcome

    def _start(self, argv: list[str], slot: int) -> Job:
        if self.cluster is not None:
            return SubmititJob(self.cluster, argv)
        local = LocalJob if self.cold else WarmJob
        return local(argv, job_environment(slot, self.jobs), trial_log(argv))

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for job in self.running:
                job.kill()


def check_executor(kind: str) -> None:
    """Refuse, before anything runs, an executor this machine cannot use."""
    if kind == "local":
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(f"--executor {kind}: needs submitit; pip install submitit") from None
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: no `sbatch` on this machine; run it where SLURM jobs are submitted")


def submitit_executor(kind: str, folder: Path, parameters: dict[str, Any], jobs: int) -> Any:
    """submitit's executor for `kind` ("slurm" or "submitit-local"), its logs under `folder`; `parameters` are the
    compare config's `slurm:` mapping (partition, timeout_min, gpus_per_node, ...), given to `update_parameters`."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if kind == "slurm" else "local")
    if kind == "slurm":
        try:
            executor.update_parameters(slurm_array_parallelism=jobs, **parameters)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"slurm: {err}") from None
    return executor


def worker_argv(
    save_dir: Path,
    name: Path,
    version: int,
    fit_args: list[str],
    search_pid: int | None = None,
    stop_at: float | None = None,
) -> list[str]:
    """The worker's arguments for one trial (see `nlparena.compare.worker`); `search_pid`: a search trial's, the
    compare process it reports to (0 where it may run on another machine); `stop_at`: the target at which it stops
    (`stop_at_target`)."""
    options = ["--search", str(search_pid)] if search_pid is not None else []
    options += ["--stop_at_target", repr(stop_at)] if stop_at is not None else []
    return ["--save_dir", str(save_dir), "--name", str(name), "--version", str(version), *options, "--", *fit_args]


def trial_log(argv: list[str]) -> Path:
    """The log file of the trial that `worker_argv` gave `argv`: `SAVE_DIR/NAME/version_N/trial.log`."""
    options = dict(zip(argv[: argv.index("--") : 2], argv[1 : argv.index("--") : 2], strict=True))
    return Path(options["--save_dir"], options["--name"], f"version_{options['--version']}", TRIAL_LOG)
