"""LightningDataModules for the translation tasks: Copy, Reverse, Sort and LanguagePair.

Each split is generated once in `setup()` from (seed, split); a batch is one slice of the
split's tensors (`ShardedBatches` yields index lists, `TensorBatches` slices), so no per-example Python.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from nlparena.data.tasks import (
    CopyTask,
    LanguagePairTask,
    ReverseTask,
    SortTask,
    SymbolTask,
    sequence_keys,
    split_generator,
)
from nlparena.data.vocab import PAD, Vocab
from nlparena.errors import ConfigError


class TensorBatches(Dataset):
    """Tensors that share their first dimension; indexing with a list of indices returns a whole batch."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices)
        batch = {name: t[idx] for name, t in self.tensors.items()}
        for name in ("src", "tgt"):  # trim the padding columns that no example of this batch uses
            width = int((batch[name] != PAD).sum(1).max())
            batch[name] = batch[name][:, :width]
        return batch


class ShardedBatches(DistributedSampler):
    """Yields lists of indices (whole batches): this process's share of a split.

    Training order comes from (seed, epoch), so a resumed run sees the same batches as an
    uninterrupted one, and every process agrees on it. Being a `DistributedSampler`, Lightning keeps
    it under DDP (and calls `set_epoch`) instead of swapping in a per-example sampler. Evaluation
    splits are shared out without padding, so no example is counted twice in a metric.
    """

    def __init__(
        self, data: Dataset, batch_size: int, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size = batch_size

    def unpadded_share(self) -> range:
        """This process's evaluation indices: every rank-th example, none repeated."""
        return range(self.rank, len(self.dataset), self.num_replicas)

    def __iter__(self):
        # shuffled by (seed, epoch) and padded to equal shares for training; in order and unpadded otherwise
        indices = list(super().__iter__()) if self.shuffle else list(self.unpadded_share())
        for start in range(0, len(indices), self.batch_size):
            yield indices[start : start + self.batch_size]

    def __len__(self) -> int:
        share = self.num_samples if self.shuffle else len(self.unpadded_share())
        return -(-share // self.batch_size)


class TranslationDataModule(pl.LightningDataModule):
    """Synthetic source -> target pairs, deterministic from `seed`.

    Args:
        train_lengths: (min, max) source length of training examples.
        val_lengths: (min, max) for validation; defaults to `train_lengths`.
        test_lengths: (min, max) for test and predict; defaults to `val_lengths`. May exceed
            training lengths to measure length generalisation.
    """

    def __init__(
        self,
        batch_size: int = 64,
        train_size: int = 10_000,
        val_size: int = 500,
        test_size: int = 500,
        train_lengths: tuple[int, int] = (3, 10),
        val_lengths: tuple[int, int] | None = None,
        test_lengths: tuple[int, int] | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        val_lengths = val_lengths or train_lengths
        test_lengths = test_lengths or val_lengths
        self.lengths = {"train": tuple(train_lengths), "val": tuple(val_lengths), "test": tuple(test_lengths)}
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.task = self.build_task()
        self._check_settings()
        self.splits: dict[str, TensorBatches] = {}

    def build_task(self) -> SymbolTask | LanguagePairTask:
        raise NotImplementedError

    def _check_settings(self) -> None:
        for key, value in (
            ("batch_size", self.batch_size),
            *((f"{s}_size", n) for s, n in self.sizes.items()),
        ):
            if value < 1:
                raise ConfigError(f"data.{key}={value}: must be at least 1")
        lowest = self.task.min_length
        for split, (lo, hi) in self.lengths.items():
            if lo < lowest or hi < lo:
                raise ConfigError(
                    f"data.{split}_lengths=[{lo}, {hi}]: need {lowest} <= min <= max for {type(self).__name__}"
                )
        # Validation and test examples are removed from training; if they could fill half of all possible
        # sequences, what is left to train on no longer covers the task.
        capacity = self.task.capacity(*self.lengths["train"])
        held_out = self.sizes["val"] + self.sizes["test"]
        if capacity < 2 * held_out:
            raise ConfigError(
                f"vocabulary too small: {type(self).__name__} has only {capacity} distinct sequences of length "
                f"{list(self.lengths['train'])}, less than twice val_size + test_size = {held_out}; "
                "raise data.vocab_size or the lengths, or lower the held-out sizes"
            )

    @property
    def vocab(self) -> Vocab:
        return self.task.vocab

    @property
    def vocab_size(self) -> int:
        return len(self.task.vocab)

    @property
    def pad_id(self) -> int:
        return PAD

    @property
    def max_length(self) -> int:
        """Longest source or target sequence in any split (the model's positional table size)."""
        longest = max(hi for _, hi in self.lengths.values())
        return max(longest, self.task.max_target_length(longest))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        held_out = {}
        for split in ("val", "test"):
            src, tgt = self.task.generate(split_generator(self.seed, split), self.sizes[split], *self.lengths[split])
            held_out[split] = TensorBatches(src=src, tgt=tgt)
        src, tgt = self.task.generate(split_generator(self.seed, "train"), self.sizes["train"], *self.lengths["train"])
        seen = torch.cat([sequence_keys(s.tensors["src"]) for s in held_out.values()])
        fresh = ~torch.isin(sequence_keys(src), seen)  # no validation or test source appears in training
        self.splits = {"train": TensorBatches(src=src[fresh], tgt=tgt[fresh]), **held_out}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        batches = ShardedBatches(self.splits[split], self.batch_size, shuffle, self.seed, world, rank)
        return DataLoader(
            self.splits[split],
            sampler=batches,
            batch_size=None,  # the sampler already yields whole batches
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class _SymbolData(TranslationDataModule):
    """Tasks over random symbols.

    Lengths start at 3 by default: with 10 symbols there are only 10 sequences of length 1 and 100 of
    length 2, so the held-out sets would take nearly all of them and training would never see those lengths.
    """

    def __init__(self, vocab_size: int = 10, **kwargs: Any) -> None:
        if vocab_size < 2:
            raise ConfigError(f"data.vocab_size={vocab_size}: must be at least 2")
        self.num_symbols = vocab_size
        super().__init__(**kwargs)


class Copy(_SymbolData):
    """Copy the source. `vocab_size` counts the task's symbols (specials come on top)."""

    def build_task(self) -> SymbolTask:
        return CopyTask(self.num_symbols)


class Reverse(_SymbolData):
    """Reverse the source."""

    def build_task(self) -> SymbolTask:
        return ReverseTask(self.num_symbols)


class Sort(_SymbolData):
    """Sort the source symbols ascending."""

    def build_task(self) -> SymbolTask:
        return SortTask(self.num_symbols)


class LanguagePair(TranslationDataModule):
    """A toy SVO -> SOV language pair with a lexicon, agreement and two-word nouns."""

    def __init__(
        self,
        num_nouns: int = 12,
        num_verbs: int = 8,
        num_adjectives: int = 8,
        **kwargs: Any,
    ) -> None:
        for key, value in (
            ("num_nouns", num_nouns),
            ("num_verbs", num_verbs),
            ("num_adjectives", num_adjectives),
        ):
            if value < 2:
                raise ConfigError(f"data.{key}={value}: must be at least 2")
        self.word_counts = (num_nouns, num_verbs, num_adjectives)
        super().__init__(**kwargs)

    def build_task(self) -> LanguagePairTask:
        return LanguagePairTask(*self.word_counts, lexicon_seed=self.seed)
