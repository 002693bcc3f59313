"""The lock of a comparison's log folder: one `nlparena compare` of a comparison at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from nlparena.compare.config import Comparison
from nlparena.errors import ConfigError


@contextmanager
def one_comparison_at_a_time(comparison: Comparison) -> Iterator[None]:
    """Hold `logs/compare/NAME/.lock` while running and reporting: a second `nlparena compare` of the same
    comparison would pick the same version folders and mark this one's runs failed, so it is refused in one line.

    The file is removed when the command ends (Ctrl-C included), while it is still locked: one that another
    process opened before and locks after is no longer the lock's file, which filelock sees (no link left) and
    opens the path again, so two holders never hold two different files."""
    path = comparison.log_dir / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    held: list[os.stat_result] = []
    lock = FileLock(path, blocking=False, on_acquired=lambda fd: held.append(os.fstat(fd)))
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{comparison.log_dir} is in use by another `nlparena compare` of {comparison.source}; "
            "run it again when that one has finished"
        ) from None
    try:
        yield
    finally:
        try:
            if held and os.path.samestat(path.stat(), held[-1]):  # not a file someone put in its place
                path.unlink()
        except OSError:  # gone already; or Windows, whose lock removes its own file on release
            pass
        finally:
            lock.release()
