"""TextClassification: labelled texts (or text pairs) of users' own files, as BERT inputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nlparena.data.ragged import ClassificationBatches, RaggedBatches, RaggedColumn
from nlparena.data.text_cache import load_array
from nlparena.data.text_data import EncodedRows, TextDataModule, text_key
from nlparena.data.text_files import TableFile, TextSource
from nlparena.data.text_pair import check_limit
from nlparena.data.text_splits import SPLIT_WORDS
from nlparena.errors import ConfigError, shorten

REMAP_ROWS = 1 << 20  # labels renumbered at a time


class TextClassification(TextDataModule):
    """Texts and labels from a table's columns; batches `{"ids", "segments", "labels"}`, the input
    `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` with the tokenizer's own CLS and SEP ids.

    Args:
        text_column: the text (A) of each row.
        text_b_column: a second text (B) of each row, for pairs of sentences; None: one text per row.
        label_column: the label of each row, any string.
        labels: the class names, in class id order; None: the labels of the training split, sorted. A label of a
            row that is not one of them, or one with no training row, is refused.
        max_tokens: rows whose encoded input ([CLS] and [SEP]s included) is longer are dropped (and counted).
        Others as in TextDataModule.
    """

    family: ClassVar[str] = "classification"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "ids"
    trim: ClassVar[dict[str, str]] = {"ids": "ids", "segments": "ids"}
    per_row: ClassVar[tuple[str, ...]] = ("keys", "labels")
    limit_keys: ClassVar[tuple[str, ...]] = ("max_tokens",)

    def __init__(
        self,
        text_column: str = "text",
        text_b_column: str | None = None,
        label_column: str = "label",
        labels: list[str] | None = None,
        max_tokens: int = 256,
        **kwargs: Any,
    ) -> None:
        check_limit("max_tokens", max_tokens, 3 if text_b_column is None else 4)
        self.text_columns = (text_column, *([text_b_column] if text_b_column else []), label_column)
        self.columns = ("a", "b") if text_b_column else ("a",)
        self.given_labels = None if labels is None else [str(label) for label in labels]
        if self.given_labels is not None and (len(set(self.given_labels)) != len(self.given_labels) or len(labels) < 2):
            raise ConfigError(f"data.labels={shorten(str(labels), 80)}: need at least two labels, each once")
        self.max_tokens = max_tokens
        # while the cache is written: label -> its id, and where each label was first seen in each split
        self._label_ids = {label: i for i, label in enumerate(self.given_labels or [])}
        self._first_seen: dict[str, dict[str, int]] = {}
        super().__init__(**kwargs)

    def source(self, path: str, what: str) -> TextSource:
        return TableFile(Path(path), self.text_columns, what)

    def texts(self, values: tuple[str, ...]) -> Any:
        return iter(values[:-1])  # not the label

    def settings(self) -> dict[str, Any]:
        return {"columns": self.text_columns, "labels": self.given_labels, "max_tokens": self.max_tokens}

    @property
    def max_length(self) -> int:
        """Longest encoded input any split can hold (the model's positional table size)."""
        return self.max_tokens

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])

    def label_id(self, split: str, line: int, label: str) -> int:
        """The id of `label`, numbered as first seen unless data.labels gives them; where it was first seen."""
        if label not in self._label_ids:
            if self.given_labels is not None:
                raise ConfigError(
                    f"data.labels: {self.plan.where(split)}:{line}: label {shorten(label)!r} is not one of "
                    f"{shorten(', '.join(self.given_labels), 80)}"
                )
            self._label_ids[label] = len(self._label_ids)
        self._first_seen.setdefault(label, {}).setdefault(split, line)
        return self._label_ids[label]

    def encode(self, split: str, rows: list[tuple[int, tuple[str, ...]]], start: int) -> EncodedRows:
        texts = [self.tokenizer.encode_batch([values[c] for _, values in rows]) for c in range(len(self.columns))]
        encoded = EncodedRows({name: [] for name in self.columns}, {"keys": [], "labels": []}, Counter())
        specials = 1 + len(self.columns)  # CLS and a SEP after each text
        for r, (line, values) in enumerate(rows):
            if specials + sum(len(column[r]) for column in texts) > self.max_tokens:
                encoded.dropped["too long"] += 1
                continue
            for name, column in zip(self.columns, texts, strict=True):
                encoded.columns[name].append(column[r])
            encoded.per_row["keys"].append(text_key("\t".join(values[:-1])))
            encoded.per_row["labels"].append(self.label_id(split, line, values[-1]))
        return encoded

    def finish(self, folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """Every label checked against the training split's; labels renumbered in sorted order (unless given)."""
        trained = {label for label, seen in self._first_seen.items() if "train" in seen}
        where = self.plan.where("train")
        for label, seen in self._first_seen.items():
            for split, line in seen.items():
                if label not in trained:
                    raise ConfigError(
                        f"{self.plan.where(split)}:{line}: label {shorten(label)!r} of a {SPLIT_WORDS[split]} row "
                        f"has no training row in {where}"
                    )
        names = self.given_labels or sorted(trained)
        for name in names:
            if name not in trained:
                raise ConfigError(f"data.labels: class {shorten(name)!r} has no training row in {where}")
        if len(names) < 2:
            raise ConfigError(f"{where}: only one label ({shorten(names[0])!r}) in the training split; need two")
        if self.given_labels is None:
            self._renumber(folder, names, meta)
        return {**meta, "class_names": names}

    def _renumber(self, folder: Path, names: list[str], meta: dict[str, Any]) -> None:
        """Labels numbered as first seen -> numbered as `names` orders them, in place, a block at a time."""
        new_id = np.empty(len(self._label_ids), dtype=np.int64)
        for label, first_seen_id in self._label_ids.items():
            new_id[first_seen_id] = names.index(label)
        for split, counts in meta["splits"].items():
            if counts["rows"] == 0:
                continue  # nothing to map
            labels = np.load(folder / split / "labels.npy", mmap_mode="r+")
            for begin in range(0, len(labels), REMAP_ROWS):
                labels[begin : begin + REMAP_ROWS] = new_id[labels[begin : begin + REMAP_ROWS]]
            labels.flush()

    def batches(self, folder: Path, size: int) -> RaggedBatches:
        columns = {name: RaggedColumn(folder, name) for name in self.columns}
        labels = load_array(folder / "labels.npy")
        return ClassificationBatches(columns, size, labels, self.tokenizer.cls_id, self.tokenizer.sep_id)
