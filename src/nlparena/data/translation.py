"""LightningDataModules for the translation tasks: Copy, Reverse, Sort and LanguagePair.

Each split is generated once in `setup()` from (seed, split); a batch is one slice of the
split's tensors (see `data/splits.py`), so no per-example Python.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nlparena.data.splits import SplitDataModule, check_length_range, resolve_lengths
from nlparena.data.tasks import CopyTask, LanguagePairTask, ReverseTask, SortTask, SymbolTask, split_generator
from nlparena.data.vocab import Vocab
from nlparena.errors import ConfigError


class TranslationDataModule(SplitDataModule):
    """Synthetic source -> target pairs, deterministic from `seed`.

    Args:
        train_lengths: (min, max) source length of training examples.
        val_lengths: (min, max) for validation; defaults to `train_lengths`.
        test_lengths: (min, max) for test and predict; defaults to `val_lengths`. May exceed
            training lengths to measure length generalisation.
    """

    family: ClassVar[str] = "translation"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "src"
    trim: ClassVar[dict[str, str]] = {"src": "src", "tgt": "tgt"}

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
        super().__init__(batch_size, train_size, val_size, test_size, seed, num_workers)
        self.lengths = resolve_lengths(train_lengths, val_lengths, test_lengths)
        self.task = self.build_task()
        self._check_settings()

    def build_task(self) -> SymbolTask | LanguagePairTask:
        raise NotImplementedError

    def _check_settings(self) -> None:
        for split, lengths in self.lengths.items():
            check_length_range(f"{split}_lengths", lengths, self.task.min_length, type(self).__name__)
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
    def max_length(self) -> int:
        """Longest source or target sequence in any split (the model's positional table size)."""
        longest = max(hi for _, hi in self.lengths.values())
        return max(longest, self.task.max_target_length(longest))

    def generate(self, split: str) -> dict[str, torch.Tensor]:
        src, tgt = self.task.generate(split_generator(self.seed, split), self.sizes[split], *self.lengths[split])
        return {"src": src, "tgt": tgt}


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
