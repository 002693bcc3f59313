"""The one error type for bad user input, and the helpers that print it as one line: `nlparena: error: ...`.

Every command raises ConfigError for a setting that is not allowed (naming the key and what is allowed);
`one_line_errors` turns it, however deep jsonargparse or Lightning wrapped it, into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import yaml

MAX_LINE = 300  # characters of the whole `nlparena: error: ...` line


class ConfigError(ValueError):
    """A setting (named in the message) has a value that is not allowed."""


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss, gradient norm or weight: the message names the step, the value and the
    likely cause. `one_line_errors` prints it as one line with exit status 1 (the input was valid; the run failed)."""


def config_error_in(ex: BaseException | None) -> ConfigError | None:
    """The ConfigError that caused `ex`, however deep jsonargparse wrapped it."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        if isinstance(ex, ConfigError):
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or (None if ex.__suppress_context__ else ex.__context__)
    return None


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _full_disk_error(ex: BaseException | None) -> OSError | None:
    """The OSError of a full disk or quota that caused `ex`, however deep Lightning wrapped it (its TensorBoard logger
    turns it into "you tried to log 0.001 ..."); else None."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        if isinstance(ex, OSError) and ex.errno in DISK_FULL:
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or (None if ex.__suppress_context__ else ex.__context__)
    return None


def disk_full_in(ex: BaseException | None) -> str | None:
    """`cannot write FILE: the disk is full (...)` when `ex` was caused by a full disk or quota; else None."""
    err = _full_disk_error(ex)
    if err is None:
        return None
    return f"cannot write {err.filename or 'a file'}: the disk is full ({os.strerror(err.errno)})"


def name_unnamed_write(ex: BaseException, path: str | os.PathLike | None) -> None:
    """Give a full disk's OSError that names no file (`file.write` raises it so, as in TensorBoard's event writer)
    the folder that was being written, `path`, so that `disk_full_in` names it."""
    err = _full_disk_error(ex)
    if err is not None and err.filename is None and path is not None:
        err.filename = os.fspath(path)


def _quiet_disk_full_in_threads(args: threading.ExceptHookArgs) -> None:
    """A writer thread's full disk (TensorBoard's) is raised again in the main thread, where it is one line: the
    thread's own traceback would print a second one."""
    if disk_full_in(args.exc_value) is None:
        threading.__excepthook__(args)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A ConfigError ends the command with `nlparena: error: ...` on stderr and exit status 2; a TrainingDiverged or
    a full disk (the input was valid, the run failed) with the same line and exit status 1; any other error
    propagates."""
    hook, threading.excepthook = threading.excepthook, _quiet_disk_full_in_threads
    try:
        yield
    except Exception as err:
        if isinstance(err, TrainingDiverged):  # Lightning re-raises a callback's error as it is
            print(f"nlparena: error: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        full = disk_full_in(err)
        if full is not None:
            print(one_line(f"nlparena: error: {full}"), file=sys.stderr)
            raise SystemExit(1) from None
        cause = config_error_in(err)
        if cause is None:
            raise
        print(one_line(f"nlparena: error: {cause}"), file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        threading.excepthook = hook


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """`text` on one line (whitespace runs, newlines included, become one space), cut to `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(text: str, limit: int = 40) -> str:
    """A user's value quoted in a message: one line, at most `limit` characters (a long input is not repeated)."""
    return one_line(text, limit)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the subcommands that are not LightningCLI's: a bad option is a ConfigError (one line)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--step 3` is not `--steps 3`: a misspelt option is an error
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be given again (overrides)
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1}); give each key once")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


MAX_ALIAS_VALUES = 10_000  # values that aliases may add to a config, once written out (configs use a handful)


def _written_out(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` holds once every alias in it is written out; memoised per node, so linear in the file
    however deep aliases nest. A ConfigError for an alias inside its own anchor (a structure without end)."""
    size = sizes.get(id(node))
    if size == -1:
        raise ConfigError(f"the alias of anchor at line {node.start_mark.line + 1} is inside that anchor (no end)")
    if size is None:
        sizes[id(node)] = -1  # being counted
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        size = sizes[id(node)] = 1 + sum(_written_out(child, sizes) for child in children)
    return size


def _load_bounded(text: str) -> Any:
    """PyYAML's `load` with the unique-key loader, refusing aliases that would expand into more than
    MAX_ALIAS_VALUES values (anchors of anchors, the "billion laughs"): built into Python objects, such a file is
    small, but every later step that walks it (the CLI parser, a deep copy) walks each alias again."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}
        added = _written_out(node, sizes) - len(sizes)  # values that exist only as repeated aliases
        if added > MAX_ALIAS_VALUES:
            raise ConfigError(
                f"its aliases expand to more than {MAX_ALIAS_VALUES} values (anchors of anchors, a 'billion laughs'); "
                "write the values out"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str = "--config") -> Any:
    """The content of a YAML file; a ConfigError naming `what` and the file when it is missing, a folder, not valid
    YAML, repeats a key or holds aliases that expand beyond MAX_ALIAS_VALUES values."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path}: is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"{what} {path}: no such file")
    try:
        return _load_bounded(path.read_text())  # a SafeLoader: no Python objects
    except ConfigError as err:
        raise ConfigError(f"{what} {path}: {err}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {path}: not valid YAML ({one_line(str(err), 120)})") from None
    except RecursionError:
        raise ConfigError(f"{what} {path}: nested too deep to be a config") from None
