"""The one error type for bad user input, and the helpers that print it as one line: `nlparena: error: ...`.

Every command raises ConfigError for a setting that is not allowed (naming the key and what is allowed);
`one_line_errors` turns it, however deep jsonargparse or Lightning wrapped it, into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn


class ConfigError(ValueError):
    """A setting (named in the message) has a value that is not allowed."""


def config_error_in(ex: BaseException | None) -> ConfigError | None:
    """The ConfigError that caused `ex`, however deep jsonargparse wrapped it."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        if isinstance(ex, ConfigError):
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or (None if ex.__suppress_context__ else ex.__context__)
    return None


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A ConfigError ends the command with `nlparena: error: ...` on stderr and exit status 2; any other error
    propagates."""
    try:
        yield
    except Exception as err:
        cause = config_error_in(err)
        if cause is None:
            raise
        print(f"nlparena: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the subcommands that are not LightningCLI's: a bad option is a ConfigError (one line)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")
