"""What the data modules of users' own text files share: files split into train/val/test, a tokenizer trained on (a
bounded sample of) the training split or read from a file, and each split tokenized once into an on-disk cache that
later runs memory-map.

All of it happens when the data module is built, so that the vocabulary size, the classes and every bad row are known
before a run starts (the CLI links `data.vocab_size` to the model then); `setup()` only maps the cached arrays.
Batches and loaders are `SplitDataModule`'s (`data/splits.py`), on `RaggedBatches` (`data/ragged.py`).
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tqdm import tqdm

from nlparena.data.ragged import RaggedBatches
from nlparena.data.splits import SplitDataModule
from nlparena.data.text_cache import (
    NpyAppender,
    RaggedAppender,
    build_folder,
    cache_root,
    is_built,
    load_array,
    read_meta,
    settings_hash,
)
from nlparena.data.text_files import TextSource
from nlparena.data.text_splits import SPLIT_NAMES, SPLIT_WORDS, SplitPlan, held_out_fraction
from nlparena.data.text_tokenizer import TextTokenizer, TokenizerConfig
from nlparena.errors import ConfigError

CACHE_VERSION = 2  # raised when the cache's layout changes, so that older caches are not read
NOT_IN_TRAINING = np.iinfo(np.int64).max  # `first_in_training` of a held-out row whose input no training row has
CHUNK_ROWS = 2048  # rows tokenized together (`encode_batch`), per split
PROGRESS_BYTES = 64 * 2**20  # files from this size up show a progress bar while they are tokenized
FIRST_IN_TRAINING = "first_in_training.npy"  # of each held-out split (`write_first_in_training`)


def text_key(text: str) -> int:
    """An int64 key of `text`, the same in every process (Python's `hash` of a string is not)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


@dataclass
class EncodedRows:
    """A chunk of one split's rows, tokenized: token rows per column, values per row, and rows dropped, by reason."""

    columns: dict[str, list[list[int]]]
    per_row: dict[str, list[int]]
    dropped: Counter = field(default_factory=Counter)


def write_first_in_training(folder: Path) -> None:
    """For each validation and test row of the cache in `folder`, the first training row whose input has the same key
    (`keys.npy`, of `text_key`), or NOT_IN_TRAINING: `<split>/first_in_training.npy`. Held-out inputs seen in training
    are then counted from the held-out rows alone, for any number of training rows used (`train_size`), instead of
    comparing every training key at each start."""
    train = load_array(folder / "train" / "keys.npy")
    order = np.argsort(train, kind="stable")  # equal keys in row order: the first of them is found
    ordered = train[order]
    for split in ("val", "test"):
        keys = np.asarray(load_array(folder / split / "keys.npy"))
        first = np.full(len(keys), NOT_IN_TRAINING, dtype=np.int64)
        if len(ordered):
            at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
            found = ordered[at] == keys
            first[found] = order[at[found]]
        np.save(folder / split / FIRST_IN_TRAINING, first)


class SplitWriter:
    """One split's cache folder: a RaggedAppender per column and an NpyAppender per per-row array."""

    def __init__(self, folder: Path, columns: tuple[str, ...], per_row: tuple[str, ...]) -> None:
        folder.mkdir()
        self.columns = {name: RaggedAppender(folder, name) for name in columns}
        self.per_row = {name: NpyAppender(folder / f"{name}.npy", np.int64) for name in per_row}
        self.dropped: Counter = Counter()

    @property
    def rows(self) -> int:
        return next(iter(self.columns.values())).rows

    def append(self, encoded: EncodedRows) -> None:
        for name, rows in encoded.columns.items():
            self.columns[name].append(rows)
        for name, values in encoded.per_row.items():
            self.per_row[name].append(values)
        self.dropped.update(encoded.dropped)

    def close(self) -> dict[str, Any]:
        rows = self.rows
        for appender in (*self.columns.values(), *self.per_row.values()):
            appender.close()
        return {"rows": rows, "dropped": dict(self.dropped)}


class TextDataModule(SplitDataModule):
    """Users' text files as train/val/test splits of token rows, cached on disk.

    Args:
        train_file: the training rows (TSV, CSV with a header row, or JSON Lines; a corpus for TextCorpus).
        val_file, test_file: the validation / test rows; a split without a file takes a seeded share of the
            training file's rows instead.
        val_fraction, test_fraction: that share (default 0.05 each), drawn from (seed, row number) only.
        train_size, val_size, test_size: the first N rows of each split; None: all of them.
        tokenizer: `file` (a tokenizer.json), or how to train one on the training split (`kind`, `vocab_size`,
            `sample_rows`).
        cache_dir: where tokenized splits, trained tokenizers and the files' content hashes are kept; default
            $NLPARENA_CACHE, else ~/.cache/nlparena.
        Others as in SplitDataModule.
    """

    columns: tuple[str, ...]  # token columns of the cache
    per_row: ClassVar[tuple[str, ...]] = ("keys",)  # int64 arrays of one value per row; keys: of the input text
    limit_keys: ClassVar[tuple[str, ...]]  # the length limits, for the report of dropped rows
    row_word: ClassVar[str] = "rows"  # what a split's size counts

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        val_fraction: float | None = None,
        test_fraction: float | None = None,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        tokenizer: TokenizerConfig = TokenizerConfig(),
        cache_dir: str | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
        bucket_window: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers, bucket_window=bucket_window)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        for split, size in self.sizes.items():
            if size is not None and size < 1:
                raise ConfigError(f"data.{split}_size={size}: must be at least 1, or null for every row")
        if tokenizer.sample_rows < 1:
            raise ConfigError(f"data.tokenizer.sample_rows={tokenizer.sample_rows}: must be at least 1")
        self.tokenizer_config, self.cache_root = tokenizer, cache_root(cache_dir)
        self.plan = SplitPlan(
            train=self.training_source(train_file),
            val=None if val_file is None else self.source(val_file, f"data.val_file={val_file}"),
            test=None if test_file is None else self.source(test_file, f"data.test_file={test_file}"),
            val_fraction=held_out_fraction("val", val_fraction, val_file is not None),
            test_fraction=held_out_fraction("test", test_fraction, test_file is not None),
            seed=seed,
            cache_root=self.cache_root,
        )
        self.tokenizer = self.read_or_train_tokenizer()
        self.cache = self.tokenized_cache()
        self.meta = read_meta(self.cache)
        self.check_splits_have_rows()

    # -- what each kind of data says ---------------------------------------------------------------------------------
    def source(self, path: str, what: str) -> TextSource:
        """The rows of one file."""
        raise NotImplementedError

    def training_source(self, train_file: str | None) -> TextSource:
        if train_file is None:
            raise ConfigError(f"data.train_file: required by {type(self).__name__}")
        return self.source(train_file, f"data.train_file={train_file}")

    def texts(self, values: tuple[str, ...]) -> Iterator[str]:
        """The texts of a row that the tokenizer is trained on."""
        yield from values

    def settings(self) -> dict[str, Any]:
        """The settings that change the cached tokens (besides the files and the tokenizer)."""
        raise NotImplementedError

    def encode(self, split: str, rows: list[tuple[int, tuple[str, ...]]], start: int) -> EncodedRows:
        """A chunk of `split`'s rows (line, values) tokenized; `start`: the rows of the split written before."""
        raise NotImplementedError

    def finish(self, folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """The cache's meta, once every split is written to `folder` (before it is renamed into place)."""
        return meta

    def batches(self, folder: Path, size: int) -> RaggedBatches:
        """The first `size` rows of the split cached in `folder`."""
        raise NotImplementedError

    # -- the tokenizer and the cache ---------------------------------------------------------------------------------
    @property
    def tokenizer_what(self) -> str:
        """The tokenizer, as refusals name it."""
        file = self.tokenizer_config.file
        return "the tokenizer trained on data.train_file" if file is None else f"data.tokenizer.file={file}"

    def read_or_train_tokenizer(self) -> TextTokenizer:
        """The tokenizer of `data.tokenizer.file`, or one trained on the first `sample_rows` training rows (kept in
        the cache, so that later runs on the same training split read it instead of training again)."""
        config = self.tokenizer_config
        if config.file is not None:
            tokenizer = TextTokenizer.from_file(config.file, self.tokenizer_what)
        else:
            rows = {key: value for key, value in self.plan.fingerprint.items() if key != "files"}
            settings = {
                "module": type(self).__name__,
                "train": self.plan.fingerprint["files"]["train"],
                **rows,
                "kind": config.kind,
                "vocab_size": config.vocab_size,
                "sample_rows": config.sample_rows,
            }
            folder = self.cache_root / "tokenizers" / settings_hash(settings)
            if not is_built(folder):
                texts = (
                    text
                    for values in islice(self.plan.training_rows(), config.sample_rows)
                    for text in self.texts(values)
                )
                trained = TextTokenizer.train(texts, config.kind, config.vocab_size)
                build_folder(folder, lambda temporary: self._save(trained, temporary, settings))
            tokenizer = TextTokenizer.from_file(folder / "tokenizer.json", f"the cached tokenizer {folder}")
        tokenizer.require(self.family, self.tokenizer_what)
        return tokenizer

    @staticmethod
    def _save(tokenizer: TextTokenizer, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
        tokenizer.save(folder / "tokenizer.json")
        return {"settings": settings}

    def tokenized_cache(self) -> Path:
        """The cache folder of these files, tokenizer and settings; written first if there is none."""
        settings = {
            "version": CACHE_VERSION,
            "module": type(self).__name__,
            "data": self.plan.fingerprint,
            "tokenizer": self.tokenizer.fingerprint,
            **self.settings(),
        }
        folder = self.cache_root / "tokens" / settings_hash(settings)
        if not is_built(folder):
            build_folder(folder, self.write_cache)
        return folder

    def write_cache(self, folder: Path) -> dict[str, Any]:
        """Every split tokenized a chunk at a time into `folder`: at most CHUNK_ROWS rows of each split in memory."""
        writers = {split: SplitWriter(folder / split, self.columns, self.per_row) for split in SPLIT_NAMES}
        pending: dict[str, list[tuple[int, tuple[str, ...]]]] = {split: [] for split in SPLIT_NAMES}
        paths = {path for split in SPLIT_NAMES for path in self.plan.source(split).paths}  # held-out rows' file: once
        size = sum(path.stat().st_size for path in paths)
        where = self.plan.where("train")
        with tqdm(desc=f"tokenizing {where}", unit=" rows", file=sys.stderr, disable=size < PROGRESS_BYTES) as bar:
            for split, line, values in self.plan.rows():
                pending[split].append((line, values))
                if len(pending[split]) == CHUNK_ROWS:
                    writers[split].append(self.encode(split, pending[split], writers[split].rows))
                    bar.update(len(pending[split]))
                    pending[split] = []
            for split, rows in pending.items():
                writers[split].append(self.encode(split, rows, writers[split].rows))
        meta = {"splits": {split: writer.close() for split, writer in writers.items()}}
        meta = self.finish(folder, meta)
        write_first_in_training(folder)
        return meta

    def check_splits_have_rows(self) -> None:
        for split in SPLIT_NAMES:
            if self.meta["splits"][split]["rows"] > 0:
                continue
            has_file = self.plan.source(split) is not self.plan.train
            how = "" if has_file or split == "train" else f"; raise data.{split}_fraction or give data.{split}_file"
            raise ConfigError(f"no {SPLIT_WORDS[split]} {self.row_word} in {self.plan.where(split)}{how}")

    # -- what Lightning calls --------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        for split in SPLIT_NAMES:
            rows, wanted = self.meta["splits"][split]["rows"], self.sizes[split]
            self.splits[split] = self.batches(self.cache / split, rows if wanted is None else min(rows, wanted))
        self.report()

    def report(self) -> None:
        """One line on the rows dropped for their length, one warning on held-out inputs also in training."""
        dropped = [
            f"{self.meta['splits'][split]['dropped'].get(reason, 0)} {reason} of {SPLIT_WORDS[split]}"
            for split in SPLIT_NAMES
            for reason in ("too long", "empty")
            if self.meta["splits"][split]["dropped"].get(reason, 0)
        ]
        if dropped:
            limits = ", ".join(f"data.{key}={getattr(self, key)}" for key in self.limit_keys)
            rank_zero_info(f"{type(self).__name__}: dropped rows ({limits}): {'; '.join(dropped)}")
        repeats = []
        for split in ("val", "test"):
            first = load_array(self.cache / split / FIRST_IN_TRAINING)[: len(self.splits[split])]
            count = int((first < len(self.splits["train"])).sum())  # an input among the training rows in use
            if count:
                repeats.append(f"{count} of {len(first)} {SPLIT_WORDS[split]} rows")
        if repeats:
            rank_zero_warn(
                f"{type(self).__name__}: {' and '.join(repeats)} have an input that also occurs in training "
                "(kept: scores on them measure recall as well as generalisation)"
            )

    @property
    def vocab(self) -> TextTokenizer:
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id
