"""LightningDataModules for the translation tasks: Copy, Reverse, Sort and LanguagePair.

Each split is generated once in `setup()` from (seed, split); a batch is one slice of the
split's tensors (see `data/splits.py`), so no per-example Python.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nlparena.data.splits import SplitDataModule
from nlparena.data.tasks import CopyTask, LanguagePairTask, ReverseTask, SortTask, SymbolTask, split_generator
from nlparena.data.vocab import Vocab
from nlparena.errors import ConfigError


class TranslationDataModule(SplitDataModule):
    """Synthetic source -> target pairs, deterministic from `seed`; its settings are SplitDataModule's."""

    family: ClassVar[str] = "translation"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "src"
    trim: ClassVar[dict[str, str]] = {"src": "src", "tgt": "tgt"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = self.build_task()
        capacity = self.task.capacity(*self.lengths["train"])
        self.check_lengths(self.task.min_length, capacity, "raise data.vocab_size (or the word counts) or the lengths")

    def build_task(self) -> SymbolTask | LanguagePairTask:
        raise NotImplementedError

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

    Keep the shortest length at 3 or more: with 10 symbols there are only 10 sequences of length 1 and 100 of
    length 2, so the held-out sets would take nearly all of them and training would never see those lengths.
    """

    def __init__(self, vocab_size: int = 10, **kwargs: Any) -> None:
        if vocab_size < 2:
            raise ConfigError(f"data.vocab_size={vocab_size}: must be at least 2")
        self.num_symbols = vocab_size
        super().__init__(**kwargs)

    task_class: ClassVar[type[SymbolTask]]

    def build_task(self) -> SymbolTask:
        return self.task_class(self.num_symbols)


class Copy(_SymbolData):
    """Copy the source. `vocab_size` counts the task's symbols (specials come on top)."""

    task_class = CopyTask


class Reverse(_SymbolData):
    """Reverse the source."""

    task_class = ReverseTask


class Sort(_SymbolData):
    """Sort the source symbols ascending."""

    task_class = SortTask


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
