"""How many CPU cores other processes leave idle, measured from the start of the command (standard library only, so
that `nlparena.__main__` imports it before the seconds of torch and Lightning imports, which then serve as the
measuring window)."""

from __future__ import annotations

import os
import time

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu_seconds() -> float | None:
    """CPU seconds every process on this machine has used since boot (Linux `/proc/stat`), None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in stat.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU seconds of this process, every thread."""
    times = os.times()
    return times.user + times.system


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sample() -> tuple[float, float | None, float]:
    return time.monotonic(), machine_cpu_seconds(), own_cpu_seconds()


_START = sample()  # the start of the command


def idle_cores(longest_window: float = 30.0) -> float | None:
    """Cores that other processes left idle since the command started (or, in a process older than `longest_window`
    seconds, over the next quarter second); None where `/proc/stat` cannot be read."""
    start = _START
    if time.monotonic() - start[0] > longest_window:
        start = sample()
        time.sleep(0.25)
    end = sample()
    elapsed = end[0] - start[0]
    if start[1] is None or end[1] is None or elapsed < 0.1:
        return None
    others = max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / elapsed
    return available_cores() - others
