"""How many CPU cores other processes leave idle, measured from the start of the command (standard library only, so
that `nlparena.__main__` imports it before the seconds of torch and Lightning imports, which then serve as the
measuring window). A compare trial forked from a warm server, its imports done before it started, measures from
its own start (`restart`)."""

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
SHORTEST_WINDOW = 0.25  # seconds


def restart() -> None:
    """Measure from now: the start of a process forked from a warm one (a compare trial), whose imports were done
    before it started."""
    global _START
    _START = sample()


def idle_cores(longest_window: float = 30.0) -> float | None:
    """Cores that other processes left idle since the command started (at least a quarter second: a warm process
    may ask at once; in a process older than `longest_window` seconds, over the next quarter second); None where
    `/proc/stat` cannot be read."""
    start = _START
    if time.monotonic() - start[0] > longest_window:
        start = sample()
    time.sleep(max(0.0, SHORTEST_WINDOW - (time.monotonic() - start[0])))
    end = sample()
    elapsed = end[0] - start[0]
    if start[1] is None or end[1] is None:
        return None
    others = max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / elapsed
    return available_cores() - others
