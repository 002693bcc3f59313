"""What a comparison's trials look like in the terminal: counts and an ETA, and why a trial's process failed."""

from __future__ import annotations

import signal
import threading

from nlparena.compare.config import MARKER
from nlparena.compare.local_jobs import Outcome


def failure_reason(outcome: Outcome) -> str:
    """Why a trial's process failed, in one line: killed by a signal, else the last line of its log."""
    if outcome.exit_code == 0:
        return f"exited without writing {MARKER}"
    if outcome.exit_code < 0:
        try:
            return f"killed by {signal.Signals(-outcome.exit_code).name}"
        except ValueError:
            return f"killed by signal {-outcome.exit_code}"
    return outcome.tail[-1] if outcome.tail else "no error output"


class Progress:
    """The trials of one `run_all` that run: counts done / running / failed / left, an ETA from the mean time of those
    that ran, and the lines that say them (printed one thread at a time)."""

    def __init__(self, total: int, jobs: int) -> None:
        self.total, self.jobs = total, jobs
        self.done = self.failed = self.running = 0
        self.seconds: list[float] = []
        self.lock = threading.Lock()

    def started(self, message: str) -> None:
        with self.lock:
            self.running += 1
            print(message, flush=True)

    def ended(self, finished: bool, seconds: float, message: str) -> None:
        with self.lock:
            self.running -= 1
            self.seconds.append(seconds)
            if finished:
                self.done += 1
            else:
                self.failed += 1
            print(message, flush=True)
            print(self.line(), flush=True)

    def line(self) -> str:
        left = self.total - self.done - self.failed - self.running
        eta = ""
        if self.seconds and (left or self.running):
            mean = sum(self.seconds) / len(self.seconds)
            eta = f", ETA {mean * (left + self.running / 2) / self.jobs / 60:.1f} min"
        return f"progress: {self.done} done, {self.running} running, {self.failed} failed, {left} left{eta}"
