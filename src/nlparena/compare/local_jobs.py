"""A trial of `nlparena compare --executor local`: a process of its own, forked from a warm server by default.

Importing torch and Lightning (and, through torchmetrics, scipy, matplotlib and transformers) takes a fresh Python
5-10 s, which a short trial would pay before its first step. So each trial's process is forked from a server that
has imported them and `nlparena.compare.worker` once (multiprocessing's forkserver, started once per Python
process). The server is a fresh interpreter, never a fork of this process (which may have initialised CUDA), and
never touches CUDA itself. Each trial is still its own process: a crash, a leak or a kill in one touches no other.

A script that runs a comparison through `nlparena.compare.runner.compare` needs multiprocessing's
`if __name__ == "__main__":` guard: each trial imports the script's main module, as multiprocessing's children do.

`NLPARENA_COLD_TRIALS=1` starts every trial as a new `python -m nlparena.compare.worker` instead (seconds slower,
the same results): for comparison and debugging.

Either way, the trial's stdout and stderr go to its log file (`trial.log` in its version folder), never to the
terminal: `nlparena compare` prints a line when a trial starts and one when it ends, and a failure's reason is read
from the end of its log.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from multiprocessing import forkserver, reduction
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from nlparena.compare.config import ERROR_LINES

COLD_TRIALS = "NLPARENA_COLD_TRIALS"
WORKER = "nlparena.compare.worker"
# start_environment first (it records the environment before the others' imports); nlparena.__main__ is the
# main module of the `nlparena` script, which each trial imports again as multiprocessing's children do
PRELOAD = ["nlparena.compare.start_environment", "torch", "lightning.pytorch", "nlparena.__main__", WORKER, __name__]
# read by torch (and the OpenMP and MKL runtimes) only when it is imported: the server imports it without them, at
# torch's default, and each trial sets its own (`threads_from_environment`)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

# None where there is no forkserver (Windows): every trial starts cold there
_FORKSERVER = (
    multiprocessing.get_context("forkserver") if "forkserver" in multiprocessing.get_all_start_methods() else None
)
# Process.start polls every other child's exit status, and two threads reading one status pipe would lose it:
# one start, join or kill at a time
_LOCK = threading.Lock()
_server_started = False


TAIL_BYTES = 1 << 16  # of a log, read for its last lines


@dataclass
class Outcome:
    """How a job's process ended: its exit code and the last lines of its output (its log's)."""

    exit_code: int
    tail: list[str]


def cold_trials() -> bool:
    """Whether trials start in a new Python process: `NLPARENA_COLD_TRIALS` asks for it, or there is no forkserver."""
    return os.environ.get(COLD_TRIALS, "") not in ("", "0") or _FORKSERVER is None


def worker_command(argv: list[str]) -> list[str]:
    """The command of a trial in a new Python process."""
    return [sys.executable, "-m", WORKER, *argv]


def open_log(log: Path) -> int:
    """A descriptor of the trial's log file (made with its folders), for the trial's stdout and stderr: appended to,
    so that the two streams' lines interleave in the order they were written."""
    log.parent.mkdir(parents=True, exist_ok=True)
    return os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)


def log_tail(log: Path, lines: int = ERROR_LINES) -> list[str]:
    """The last `lines` non-blank lines of a log (of a line a progress bar redrew with `\r`, its last state); []
    if there is no log."""
    try:
        with log.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - TAIL_BYTES))
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    kept = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return [line for line in kept if line.strip()][-lines:]


class LocalJob:
    """A trial in a new Python process (`NLPARENA_COLD_TRIALS=1`), its stdout and stderr to `log`."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        fd = open_log(log)
        try:
            self.proc = subprocess.Popen(
                worker_command(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT, env=env
            )
        finally:
            os.close(fd)  # the trial's process holds its own copy

    def outcome(self) -> Outcome:
        self.proc.wait()
        return Outcome(self.proc.returncode, log_tail(self.log))

    def kill(self) -> None:
        self.proc.kill()


def start_server() -> None:
    """Start the forkserver (once per process; later calls return at once), from this process's environment less
    the thread counts; it imports `PRELOAD` before it serves the first trial."""
    global _server_started
    with _LOCK:
        if _server_started:
            return
        _FORKSERVER.set_forkserver_preload(PRELOAD)
        # Called before the trials' threads start (Launcher): no other thread of ours reads os.environ meanwhile.
        held = {name: os.environ.pop(name) for name in THREAD_VARIABLES if name in os.environ}
        try:
            forkserver.ensure_running()
            _server_started = True
        finally:
            os.environ.update(held)


class _InheritedFd:
    """One of our file descriptors, given to the trial's process (through the forkserver) as a descriptor of its own."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return (_detach, (reduction.DupFd(self.fd),))


def _detach(dup: Any) -> int:
    return dup.detach()


class WarmJob:
    """A trial in a process forked from the warm server: its environment `env`, its stdout and stderr to `log` (as
    LocalJob's), our cwd and sys.path."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        start_server()
        self.log = log
        fd = open_log(log)
        self.process = _FORKSERVER.Process(target=_run_trial, args=(argv, env, _InheritedFd(fd), _InheritedFd(fd)))
        try:
            with _LOCK:
                self.process.start()
        finally:
            os.close(fd)  # the trial's process holds its own copies

    def outcome(self) -> Outcome:
        wait([self.process.sentinel])  # without the lock: it would hold back every other trial's start
        with _LOCK:
            self.process.join()
        assert self.process.exitcode is not None
        return Outcome(self.process.exitcode, log_tail(self.log))

    def kill(self) -> None:
        with _LOCK:
            self.process.kill()


def _run_trial(argv: list[str], env: dict[str, str], stdout: int, stderr: int) -> None:
    """The trial's process, forked from the server: made like a new `python -m nlparena.compare.worker ARGV` with
    environment `env`, then the worker's main."""
    import numpy
    import torch

    from nlparena import cpu_load
    from nlparena.cli.threads import threads_from_environment
    from nlparena.compare import worker
    from nlparena.compare.start_environment import BEFORE_IMPORTS

    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.close(stdout)
    os.close(stderr)
    # what the server's imports set (Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK): a new process's imports set it too
    imported = {name: value for name, value in os.environ.items() if BEFORE_IMPORTS.get(name) != value}
    os.environ.clear()
    os.environ.update({**env, **imported})
    threads_from_environment()
    cpu_load.restart()  # `--threads auto` measures the other processes' load from this process's start
    # a new process seeds numpy and torch from the OS (Python's `random` reseeds itself in a forked child): trials
    # without a seed do not all draw the server's numbers
    numpy.random.seed()
    torch.seed()
    # Lightning starts the other processes of a multi-process run as `python -m <__main__'s module> <sys.argv[1:]>`
    sys.argv = [worker.__file__, *argv]
    sys.modules["__main__"] = worker
    try:
        worker.main(argv)
    except Exception:  # printed as an uncaught exception (multiprocessing would add a line naming the process)
        traceback.print_exc()
        raise SystemExit(1) from None
    finally:
        atexit._run_exitfuncs()  # a forked child ends in os._exit, which runs none: as at a new process's exit
