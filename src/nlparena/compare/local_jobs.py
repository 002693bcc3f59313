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
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing import forkserver, reduction
from multiprocessing.connection import wait
from typing import IO, Any

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


@dataclass
class Outcome:
    """How a job's process ended: its exit code and the last lines of its stderr."""

    exit_code: int
    stderr_tail: list[str]


def cold_trials() -> bool:
    """Whether trials start in a new Python process: `NLPARENA_COLD_TRIALS` asks for it, or there is no forkserver."""
    return os.environ.get(COLD_TRIALS, "") not in ("", "0") or _FORKSERVER is None


def worker_command(argv: list[str]) -> list[str]:
    """The command of a trial in a new Python process."""
    return [sys.executable, "-m", WORKER, *argv]


class StderrTail:
    """Reads a process's stderr to its end in a thread: keeps the last non-blank lines and, with `stream`, copies
    every line to ours as it comes (one job at a time: the user sees the run's progress bar and warnings)."""

    def __init__(self, pipe: IO[bytes], stream: bool) -> None:
        self.tail: deque[str] = deque(maxlen=ERROR_LINES)
        self.reader = threading.Thread(target=self._read, args=(pipe, stream), daemon=True)
        self.reader.start()

    def _read(self, pipe: IO[bytes], stream: bool) -> None:
        with pipe:
            for raw in pipe:
                line = raw.decode(errors="replace")
                if stream:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                if line.strip():
                    self.tail.append(line.rstrip())

    def lines(self) -> list[str]:
        """The last lines, once the process and every process that inherited its stderr closed it."""
        self.reader.join()
        return list(self.tail)


class LocalJob:
    """A trial in a new Python process (`NLPARENA_COLD_TRIALS=1`)."""

    def __init__(self, argv: list[str], env: dict[str, str], stream: bool) -> None:
        self.proc = subprocess.Popen(worker_command(argv), stderr=subprocess.PIPE, env=env)
        assert self.proc.stderr is not None
        self.stderr = StderrTail(self.proc.stderr, stream)

    def outcome(self) -> Outcome:
        self.proc.wait()
        return Outcome(self.proc.returncode, self.stderr.lines())

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
    """A trial in a process forked from the warm server: its environment `env`, its stderr read as LocalJob's, our
    stdout, cwd and sys.path."""

    def __init__(self, argv: list[str], env: dict[str, str], stream: bool) -> None:
        start_server()
        read, write = os.pipe()
        args = (argv, env, _InheritedFd(1), _InheritedFd(write))
        self.process = _FORKSERVER.Process(target=_run_trial, args=args)
        try:
            with _LOCK:
                self.process.start()
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)  # the trial's process holds its own copy: its end is our end of file
        self.stderr = StderrTail(os.fdopen(read, "rb"), stream)

    def outcome(self) -> Outcome:
        wait([self.process.sentinel])  # without the lock: it would hold back every other trial's start
        with _LOCK:
            self.process.join()
        assert self.process.exitcode is not None
        return Outcome(self.process.exitcode, self.stderr.lines())

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
