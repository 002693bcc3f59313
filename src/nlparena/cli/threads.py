"""`--threads`: torch's intra-op CPU threads for a run, a number or "auto" (the cores other processes leave idle).

Measured on 2 CPU cores (README, "Speed"): the quick start takes 9.8 s with 2 threads and 12.1 s with 1 on a quiet
machine, but 22 s with 2 threads and 12.8 s with 1 beside one busy process: a thread that waits for a taken core
stalls every step.
"""

from __future__ import annotations

import math
import os

import torch

from nlparena.cpu_load import available_cores, idle_cores
from nlparena.errors import ConfigError


def auto_threads() -> int:
    """One thread per core that other processes left idle (at least 80 % idle) since the command started, at least
    one; torch's default when OMP_NUM_THREADS is set (`nlparena compare --jobs N` sets it) or the load cannot be
    measured."""
    idle = None if "OMP_NUM_THREADS" in os.environ else idle_cores()
    if idle is None:
        return torch.get_num_threads()
    return max(1, min(available_cores(), math.floor(idle + 0.2)))


def threads_from_environment() -> None:
    """torch's threads from MKL_NUM_THREADS or else OMP_NUM_THREADS, where one is set, as torch takes them when it is
    imported: for a process whose environment was set after that (a compare trial forked from a warm server)."""
    for name in ("MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            torch.set_num_threads(int(value))
            return


def set_threads(threads: int | str | None) -> None:
    """torch's intra-op threads (`--threads`): a number, "auto", or None for torch's default."""
    if threads is None:
        return
    if threads == "auto":
        torch.set_num_threads(auto_threads())
        return
    if isinstance(threads, str) or threads < 1:
        raise ConfigError(f"threads={threads}: must be at least 1, auto, or null (torch's default)")
    torch.set_num_threads(threads)
