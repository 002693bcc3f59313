"""Streaming readers of users' text files, each bad input a one-line ConfigError naming the file (and its line).

A table is TSV, CSV (its header row names the columns) or JSON Lines (one object per line), chosen by suffix; a pair
may also be two line-aligned plain text files; a pre-training corpus is one sentence per line with a blank line
between documents. Every reader is a generator over the file's lines: no file is read into memory.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from nlparena.errors import ConfigError, one_line, shorten

TABLE_SUFFIXES = (".tsv", ".csv", ".jsonl")
HASH_BLOCK = 1 << 20  # bytes read at a time when hashing a file

Row = tuple[int, tuple[str, ...]]  # (line number of the row's start, its values in the order asked for)


def checked_file(path: str | Path, what: str) -> Path:
    """`path` as a Path; a ConfigError `{what}: ...` when it is missing, a folder or empty."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a folder, not a file")
    if not path.is_file():
        raise ConfigError(f"{what}: {path}: no such file")
    if path.stat().st_size == 0:
        raise ConfigError(f"{what}: {path} is empty")
    return path


def content_hash(path: Path) -> str:
    """sha256 of the file's bytes, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def text_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """(line number, line with its newline) of a UTF-8 file; a ConfigError `{what}: FILE:LINE: ...` for bytes that
    are not UTF-8."""
    with path.open("rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                # a byte order mark (as some editors write) is not part of the first column's name
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ConfigError(
                    f"{what}: {path}:{number}: not UTF-8 text (byte {raw[err.start]:#04x} at column {err.start + 1})"
                ) from None


def _column_indices(path: Path, header: Sequence[str], columns: Sequence[str], what: str) -> list[int]:
    missing = [name for name in columns if name not in header]
    if missing:
        raise ConfigError(f"{what}: {path} has no column {missing[0]!r} (its columns: {', '.join(header)})")
    return [list(header).index(name) for name in columns]


def _delimited_records(path: Path, delimiter: str, what: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank record. TSV fields are split at every tab (quotes are text: a stray
    quote shifts no column); CSV records follow the csv module's quoting."""
    lines = text_lines(path, what)
    if delimiter == "\t":
        for number, line in lines:
            text = line.rstrip("\r\n")
            if text.strip():
                yield number, text.split("\t")
        return
    reader = csv.reader((line for _, line in lines), delimiter=delimiter)
    start = 1
    try:
        for fields in reader:
            if fields:
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as err:
        raise ConfigError(f"{what}: {path}:{reader.line_num}: not valid CSV ({one_line(str(err), 80)})") from None


def _delimited_rows(path: Path, columns: Sequence[str], what: str) -> Iterator[Row]:
    records = _delimited_records(path, "\t" if path.suffix == ".tsv" else ",", what)
    first = next(records, None)
    if first is None:
        raise ConfigError(f"{what}: {path} is empty")
    header = [name.strip() for name in first[1]]
    indices = _column_indices(path, header, columns, what)
    empty = True
    for number, fields in records:
        if len(fields) != len(header):
            raise ConfigError(
                f"{what}: {path}:{number}: {len(fields)} fields, but the header has {len(header)} "
                f"({shorten(', '.join(header), 60)})"
            )
        empty = False
        yield number, tuple(fields[i] for i in indices)
    if empty:
        raise ConfigError(f"{what}: {path} has a header but no rows")


def _json_value(path: Path, number: int, record: dict, name: str, what: str) -> str:
    if name not in record:
        keys = shorten(", ".join(map(str, record)), 60)
        raise ConfigError(f"{what}: {path}:{number}: no key {name!r} (its keys: {keys})")
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{what}: {path}:{number}: {name!r} is {type(value).__name__}, not text")
    return str(value)


def _json_rows(path: Path, columns: Sequence[str], what: str) -> Iterator[Row]:
    empty = True
    for number, line in text_lines(path, what):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{what}: {path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{what}: {path}:{number}: not a JSON object (one object per line)")
        empty = False
        yield number, tuple(_json_value(path, number, record, name, what) for name in columns)
    if empty:
        raise ConfigError(f"{what}: {path} has no JSON objects")


@dataclass(frozen=True)
class TableFile:
    """The named `columns` of a TSV, CSV or JSON Lines file (`what`: the config key, for messages)."""

    path: Path
    columns: tuple[str, ...]
    what: str

    def __post_init__(self) -> None:
        if self.path.suffix not in TABLE_SUFFIXES:
            raise ConfigError(
                f"{self.what}: {self.path}: unknown file type {self.path.suffix or '(no suffix)'!r}; "
                f"give a {', '.join(TABLE_SUFFIXES)} file"
            )
        checked_file(self.path, self.what)

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    def rows(self) -> Iterator[Row]:
        if self.path.suffix == ".jsonl":
            return _json_rows(self.path, self.columns, self.what)
        return _delimited_rows(self.path, self.columns, self.what)


def _line_count(lines: Iterator[tuple[int, str]], read: int) -> int:
    """Lines of a file of which `read` were read: the last line number of the rest."""
    return max((number for number, _ in lines), default=read)


@dataclass(frozen=True)
class AlignedFiles:
    """Line i of each plain text file together: a row of one value per file."""

    files: tuple[Path, ...]
    what: str

    def __post_init__(self) -> None:
        for path in self.files:
            checked_file(path, self.what)

    @property
    def paths(self) -> tuple[Path, ...]:
        return self.files

    def rows(self) -> Iterator[Row]:
        readers = [text_lines(path, self.what) for path in self.files]
        for number, lines in enumerate(zip_longest(*readers), 1):
            if any(line is None for line in lines):
                ended = zip(lines, readers, strict=True)
                counts = [number - 1 if line is None else _line_count(rest, number) for line, rest in ended]
                sizes = " but ".join(f"{path} has {n} lines" for path, n in zip(self.files, counts, strict=True))
                raise ConfigError(f"{self.what}: {sizes}; the files must be line-aligned")
            yield number, tuple(line.rstrip("\r\n") for _, line in lines)


@dataclass(frozen=True)
class CorpusFile:
    """A pre-training corpus: one sentence per line, a blank line between documents; a row is one document's
    sentences."""

    path: Path
    what: str

    def __post_init__(self) -> None:
        checked_file(self.path, self.what)

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    def rows(self) -> Iterator[Row]:
        sentences: list[str] = []  # one document's, never the file's
        start, empty = 0, True
        for number, line in text_lines(self.path, self.what):
            text = line.strip()
            if text and not sentences:
                start = number
            if text:
                sentences.append(text)
            elif sentences:
                yield start, tuple(sentences)
                sentences, empty = [], False
        if sentences:
            yield start, tuple(sentences)
        elif empty:
            raise ConfigError(f"{self.what}: {self.path} has only blank lines")


TextSource = TableFile | AlignedFiles | CorpusFile
