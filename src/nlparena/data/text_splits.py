"""Which split each row of users' text belongs to: its own file, or a seeded draw from (seed, row number) only.

A row's split does not depend on the rows before it, on worker processes or on how far the file has been read, so
splitting streams, and the same seed splits the same file the same way everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from nlparena.data.text_cache import file_hash
from nlparena.data.text_files import TextSource, content_hash
from nlparena.errors import ConfigError

SPLIT_NAMES = ("train", "val", "test")
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}
DEFAULT_HELD_OUT = 0.05  # share of the training file's rows held out for a split that has no file of its own


def held_out_draw(seed: int, row: int) -> float:
    """A number in [0, 1) that depends on (seed, row) only: a hash, not a random stream."""
    digest = hashlib.blake2b(f"{seed}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def held_out_fraction(split: str, fraction: float | None, has_file: bool) -> float:
    """The share of the training file's rows that go to `split`: `fraction`, DEFAULT_HELD_OUT when neither it nor a
    file is given, 0 when the split has its own file (both: a ConfigError)."""
    if has_file:
        if fraction is not None:
            raise ConfigError(f"data.{split}_fraction={fraction}: give data.{split}_file or a fraction, not both")
        return 0.0
    fraction = DEFAULT_HELD_OUT if fraction is None else fraction
    if not 0 < fraction < 1:
        raise ConfigError(f"data.{split}_fraction={fraction}: must be in (0, 1), or give data.{split}_file")
    return fraction


@dataclass(frozen=True)
class SplitPlan:
    """Where each split's rows come from: `train` gives its rows drawn for val and test (`*_fraction`) to those
    splits, unless they have a file of their own."""

    train: TextSource
    val: TextSource | None
    test: TextSource | None
    val_fraction: float
    test_fraction: float
    seed: int
    cache_root: Path | None = None  # where the files' content hashes are remembered (`text_cache.file_hash`)

    def __post_init__(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"data.val_fraction={self.val_fraction} and data.test_fraction={self.test_fraction} leave no "
                "training rows; their sum must be below 1"
            )

    def split_of(self, row: int) -> str:
        """The split of the training file's row number `row` (0-based)."""
        if not (self.val_fraction or self.test_fraction):
            return "train"
        draw = held_out_draw(self.seed, row)
        if draw < self.test_fraction:
            return "test"
        return "val" if draw < self.test_fraction + self.val_fraction else "train"

    def rows(self) -> Iterator[tuple[str, int, tuple[str, ...]]]:
        """(split, line number, values) of every row: the training file's, then the val and test files'."""
        for index, (line, values) in enumerate(self.train.rows()):
            yield self.split_of(index), line, values
        for split in ("val", "test"):
            source = self.source(split)
            if source is not self.train:
                for line, values in source.rows():
                    yield split, line, values

    def training_rows(self) -> Iterator[tuple[str, ...]]:
        """Values of the training split's rows, lazily."""
        for index, (_, values) in enumerate(self.train.rows()):
            if self.split_of(index) == "train":
                yield values

    def source(self, split: str) -> TextSource:
        """The file(s) that `split`'s rows come from."""
        return getattr(self, split) or self.train

    def where(self, split: str) -> str:
        """The file(s) of `split`, for messages: `a.tsv`, or `b.txt + c.txt` for aligned files."""
        return " + ".join(str(path) for path in self.source(split).paths)

    def digest(self, path: Path) -> str:
        return content_hash(path) if self.cache_root is None else file_hash(path, self.cache_root)

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """What the rows of every split depend on: the files' contents (sha256) and the split settings."""
        files = {
            split: [self.digest(path) for path in getattr(self, split).paths]
            for split in SPLIT_NAMES
            if getattr(self, split) is not None
        }
        return {
            "files": files,
            "columns": getattr(self.train, "columns", None),
            "seed": self.seed if (self.val_fraction or self.test_fraction) else None,
            "fractions": [self.val_fraction, self.test_fraction],
        }
