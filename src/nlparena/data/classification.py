"""LightningDataModules for the classification tasks: Sentiment (one sentence) and SentimentPair (two).

Inputs are encoded as BERT wants them (`[CLS] A [SEP] (B [SEP])` with segment ids). With `class_weights`
a split is drawn in the wanted class proportions by taking per-class quotas from a surplus of generated
candidates, still from (seed, split) only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from nlparena.data.sentiment import SentimentLexicon, SentimentPairTask, SentimentTask, bert_inputs
from nlparena.data.splits import SplitDataModule
from nlparena.data.tasks import split_generator
from nlparena.data.vocab import Vocab
from nlparena.errors import ConfigError

MAX_CANDIDATE_ROUNDS = 32  # rounds of N candidates drawn before a wanted class counts as unreachable


def class_quotas(n: int, weights: Sequence[float]) -> torch.Tensor:
    """(C,) examples per class: `n` shared in proportion to `weights`, leftovers to the largest remainders."""
    w = torch.tensor(weights, dtype=torch.float64)
    exact = n * w / w.sum()  # (C,)
    quotas = exact.floor().long()
    by_remainder = torch.argsort(quotas - exact, stable=True)  # largest fractional part first
    quotas[by_remainder[: n - int(quotas.sum())]] += 1
    return quotas


def take_quotas(labels: torch.Tensor, quotas: torch.Tensor) -> torch.Tensor:
    """Indices of the first `quotas[c]` examples of each class c among (M,) `labels`, in their original order."""
    rank = torch.nn.functional.one_hot(labels, len(quotas)).cumsum(0).gather(1, labels[:, None]).squeeze(1) - 1  # (M,)
    return (rank < quotas[labels]).nonzero().squeeze(1)


class ClassificationDataModule(SplitDataModule):
    """Labelled BERT inputs, deterministic from `seed`; batches `{"ids", "segments", "labels"}`.

    Args:
        class_weights: wanted class proportions in `class_names` order (normalised), for every split;
            None keeps the task's own proportions.
        Others as in SplitDataModule (the lengths count the words of each sentence).
    """

    family: ClassVar[str] = "classification"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "ids"
    trim: ClassVar[dict[str, str]] = {"ids": "ids", "segments": "ids"}

    def __init__(self, class_weights: list[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.task = self.build_task()
        self._check_settings()

    def build_task(self) -> SentimentTask:
        raise NotImplementedError

    def _check_settings(self) -> None:
        capacity = self.task.capacity(*self.lengths["train"])
        self.check_lengths(self.task.min_length, capacity, "raise the lengths or the lexicon sizes")
        weights = self.class_weights
        if weights is None:
            return
        key = f"data.class_weights={weights}"
        if len(weights) != self.num_classes:
            raise ConfigError(f"{key}: need {self.num_classes} weights, one per class {list(self.class_names)}")
        if min(weights) < 0:
            raise ConfigError(f"{key}: weights must not be negative")
        if sum(weights) <= 0:
            raise ConfigError(f"{key}: weights must not sum to 0")

    @property
    def vocab(self) -> Vocab:
        return self.task.lexicon.vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def max_length(self) -> int:
        """Longest encoded input (CLS and SEPs included) in any split (the model's positional table size)."""
        return self.task.max_input_length(max(hi for _, hi in self.lengths.values()))

    @property
    def num_classes(self) -> int:
        return len(self.task.class_names)

    @property
    def class_names(self) -> list[str]:
        return list(self.task.class_names)

    def generate(self, split: str) -> dict[str, torch.Tensor]:
        g = split_generator(self.seed, split)
        n, (lo, hi) = self.sizes[split], self.lengths[split]
        if self.class_weights is None:
            sentences, labels = self.task.sample(g, n, lo, hi)
        else:
            sentences, labels = self._sample_in_proportion(g, split)
        ids, segments = bert_inputs(*sentences)
        return {"ids": ids, "segments": segments, "labels": labels}

    def _sample_in_proportion(self, g: torch.Generator, split: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Candidates drawn N at a time until every class can fill its quota, then the quotas taken."""
        n, lengths = self.sizes[split], self.lengths[split]
        quotas = class_quotas(n, self.class_weights)
        drawn: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] = []
        for _ in range(MAX_CANDIDATE_ROUNDS):  # a loop over rounds of N candidates, not over examples
            drawn.append(self.task.sample(g, n, *lengths))
            counts = torch.bincount(torch.cat([labels for _, labels in drawn]), minlength=len(quotas))
            if bool((counts >= quotas).all()):
                break
        else:
            short = int((counts < quotas).nonzero()[0])
            raise ConfigError(
                f"data.class_weights={self.class_weights}: cannot fill class '{self.class_names[short]}' of the "
                f"{split} split ({int(counts[short])} of {int(quotas[short])} in {len(drawn) * n} candidates "
                f"with lengths {list(lengths)}); lower its weight or change the lengths"
            )
        labels = torch.cat([labels for _, labels in drawn])
        keep = take_quotas(labels, quotas)
        sentences = tuple(torch.cat(column)[keep] for column in zip(*(s for s, _ in drawn), strict=True))
        return sentences, labels[keep]


class SentimentLexiconSizes:
    """The sentiment lexicon's sizes as config keys, for every data module over it (Sentiment, SentimentPair and
    the Pretraining corpus: the same sizes give the same vocabulary, so a pre-trained checkpoint fits).

    Args:
        num_positive, num_negative: `good*` and `bad*` words.
        num_neutral: neutral words.
        num_negators: `not*` words, each flipping the polarity of the next sentiment word.
    """

    def __init__(
        self, num_positive: int = 8, num_negative: int = 8, num_neutral: int = 16, num_negators: int = 2, **kwargs: Any
    ) -> None:
        sizes = {"num_positive": num_positive, "num_negative": num_negative, "num_neutral": num_neutral}
        for key, value in {**sizes, "num_negators": num_negators}.items():
            if value < 1:
                raise ConfigError(f"data.{key}={value}: must be at least 1")
        self.lexicon = SentimentLexicon(num_positive, num_negative, num_neutral, num_negators)
        super().__init__(**kwargs)


class _SentimentData(SentimentLexiconSizes, ClassificationDataModule):
    """Classification tasks over the sentiment lexicon."""

    task_class: ClassVar[type[SentimentTask]]

    def build_task(self) -> SentimentTask:
        return self.task_class(self.lexicon)


class Sentiment(_SentimentData):
    """One sentence -> negative / neutral / positive / mixed; a negator flips the next sentiment word."""

    task_class = SentimentTask


class SentimentPair(_SentimentData):
    """Two sentences -> agree / disagree (both polar, same or opposite polarity) / unrelated."""

    task_class = SentimentPairTask
