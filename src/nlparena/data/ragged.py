"""Batches of rows of different lengths, read from memory-mapped token arrays (see `data/text_cache.py`).

A `RaggedBatches` has the interface of `TensorBatches`: indexing with a list of row indices gives a whole batch of
LongTensors padded with PAD to the batch's longest row, and `length_keys` sorts rows for length bucketing, so
`ShardedBatches`, DDP sharding and `SplitDataModule`'s loaders work on it unchanged.

Shapes: B rows in a batch, W the longest row of the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nlparena.data.text_cache import load_array
from nlparena.data.vocab import EOS, PAD


class RaggedColumn:
    """Rows of token ids: `ids[offsets[i]:offsets[i + 1]]`, memory-mapped from `<folder>/<name>.*.npy`."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self._open()

    def _open(self) -> None:
        self.ids = load_array(self.folder / f"{self.name}.ids.npy")
        self.offsets = load_array(self.folder / f"{self.name}.offsets.npy")

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "name": self.name}  # a worker process maps the files again; no copy

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self, count: int) -> np.ndarray:
        """(count,) tokens in each of the first `count` rows."""
        return np.diff(self.offsets[: count + 1])


def padded(rows: list[np.ndarray | list[int]], pad: int = PAD) -> torch.Tensor:
    """(B, W) LongTensor of `rows`, `pad` after each."""
    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), pad, dtype=torch.long)
    for i, row in enumerate(rows):  # a loop over the rows of one batch
        out[i, : len(row)] = torch.as_tensor(np.asarray(row, dtype=np.int64))
    return out


class RaggedBatches(Dataset):
    """The first `size` rows of a split's cached columns; subclasses say how rows become a batch (`batch`)."""

    def __init__(self, columns: dict[str, RaggedColumn], size: int, labels: np.ndarray | None = None) -> None:
        self.columns, self.size, self.labels = columns, size, labels

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return self.batch([int(i) for i in indices])

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def length_keys(self) -> torch.Tensor:
        """(N,) sort key per row, lexicographic over the lengths of its columns: rows of equal key give a batch
        without padding."""
        keys = np.zeros(self.size, dtype=np.int64)
        for column in self.columns.values():
            lengths = column.lengths(self.size)
            keys = keys * (int(lengths.max(initial=0)) + 1) + lengths
        return torch.from_numpy(keys)


class PairBatches(RaggedBatches):
    """Translation batches `{"src", "tgt"}` of columns `src` and `tgt`; targets end with EOS (as `tasks.append_eos`)."""

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        src, tgt = self.columns["src"], self.columns["tgt"]
        targets = [np.append(tgt.row(i), EOS) for i in indices]
        return {"src": padded([src.row(i) for i in indices]), "tgt": padded(targets)}


class ClassificationBatches(RaggedBatches):
    """Classification batches `{"ids", "segments", "labels"}`: `[CLS] A [SEP] (B [SEP])` with the tokenizer's own
    CLS and SEP ids, segment 0 over CLS, A and the first SEP, 1 over B and the last SEP (0 again on PAD), as
    `sentiment.bert_inputs` encodes them."""

    def __init__(self, columns: dict[str, RaggedColumn], size: int, labels: np.ndarray, cls_id: int, sep_id: int):
        super().__init__(columns, size, labels)
        self.cls_id, self.sep_id = cls_id, sep_id

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        rows, segments = [], []
        for i in indices:
            first = [self.cls_id, *self.columns["a"].row(i).tolist(), self.sep_id]
            second = [*self.columns["b"].row(i).tolist(), self.sep_id] if "b" in self.columns else []
            rows.append(first + second)
            segments.append([0] * len(first) + [1] * len(second))
        labels = torch.as_tensor(np.asarray(self.labels[indices], dtype=np.int64))
        return {"ids": padded(rows), "segments": padded(segments, 0), "labels": labels}

    def length_keys(self) -> torch.Tensor:
        """(N,) encoded length of each row (what sets a batch's width)."""
        total = sum(column.lengths(self.size) for column in self.columns.values())
        return torch.from_numpy(np.asarray(total, dtype=np.int64))
