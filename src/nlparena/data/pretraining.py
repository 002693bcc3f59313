"""The pre-training corpus for MLM + NSP over the sentiment lexicon, and BERT's token masking.

A document has a mood (positive, negative, neutral or mixed) and a topic, and is two segments A and B
drawn from both. The mood sets how often sentiment words and negators occur and which polarity a
sentiment word means once negation is applied, so `not0 [MASK]` in a positive document is a `bad*`
word; negators are mostly followed by a sentiment word; the topic is a window of half the neutral
words that the document's neutral words come from. So MLM has words that go together to learn, and
NSP can tell a document's own B (same mood and topic) from another document's. Same lexicon sizes as
`Sentiment` give the same `Vocab`, so a model pre-trained here can be fine-tuned there.

Shapes: N documents, S segment width (PAD after each segment), W encoded width ([CLS] A [SEP] B [SEP]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from nlparena.data.classification import SentimentLexiconSizes
from nlparena.data.sentiment import (
    NEGATIVE_WORD,
    NEGATOR,
    NEUTRAL_WORD,
    POSITIVE_WORD,
    SentimentLexicon,
    after,
    bert_inputs,
)
from nlparena.data.splits import SplitDataModule
from nlparena.data.tasks import (
    CAPACITY_CAP,
    distinct_sequences,
    padding_mask,
    random_lengths,
    sequence_keys,
    split_generator,
)
from nlparena.data.vocab import MASK, NUM_SPECIALS, Vocab
from nlparena.errors import ConfigError

IGNORE_INDEX = -100  # mlm_labels where nothing is to be predicted (cross_entropy's default ignore_index)

MOODS = ("positive", "negative", "neutral", "mixed")
# Per mood: P(a word is a negator), P(a word is a sentiment word), P(a sentiment word means positive
# once negation is applied). Neutral documents have few of either.
NEGATOR_RATE = torch.tensor([0.12, 0.12, 0.03, 0.12])
SENTIMENT_RATE = torch.tensor([0.25, 0.25, 0.04, 0.25])
POSITIVE_SHARE = torch.tensor([0.9, 0.1, 0.5, 0.5])
NEGATED_SENTIMENT = 0.9  # P(the word after a negator is a sentiment word)


def mood_sentences(
    lexicon: SentimentLexicon, g: torch.Generator, mood: torch.Tensor, topic: torch.Tensor, lo: int, hi: int
) -> torch.Tensor:
    """(M,) moods and topics -> (M, hi) ids, PAD after a length drawn from [lo, hi]."""
    m = len(mood)
    negator_rate, sentiment_rate = NEGATOR_RATE[mood].unsqueeze(1), SENTIMENT_RATE[mood].unsqueeze(1)  # (M, 1)
    u = torch.rand(m, hi, generator=g)
    negator = u < negator_rate
    sentiment = (u >= negator_rate) & (u < negator_rate + sentiment_rate)
    negated = after(negator) & (torch.rand(m, hi, generator=g) < NEGATED_SENTIMENT)
    sentiment, negator = sentiment | negated, negator & ~negated
    # write the polarity that, after negation, means what the mood asks for
    meant_positive = torch.rand(m, hi, generator=g) < POSITIVE_SHARE[mood].unsqueeze(1)
    written_positive = meant_positive ^ after(negator)
    polar = torch.where(written_positive, POSITIVE_WORD, NEGATIVE_WORD)
    kinds = torch.where(negator, NEGATOR, torch.where(sentiment, polar, NEUTRAL_WORD))  # (M, hi)
    kinds = kinds.masked_fill(~padding_mask(random_lengths(g, m, lo, hi), hi), -1)  # -1: PAD
    ids = lexicon.words(g, kinds)
    num_neutral = len(lexicon.neutral)
    window = torch.randint(max(1, num_neutral // 2), (m, hi), generator=g)  # (M, hi) offset in the topic's window
    topical = lexicon.neutral[(topic.unsqueeze(1) + window) % num_neutral]
    return torch.where(kinds == NEUTRAL_WORD, topical, ids)


def documents(
    lexicon: SentimentLexicon, g: torch.Generator, n: int, lo: int, hi: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A (N, hi), B (N, hi), mood (N,)): each document's two segments share its mood and topic."""
    mood = torch.randint(len(MOODS), (n,), generator=g)
    topic = torch.randint(len(lexicon.neutral), (n,), generator=g)
    segments = mood_sentences(lexicon, g, mood.repeat(2), topic.repeat(2), lo, hi)  # (2N, hi): all As, then all Bs
    return segments[:n], segments[n:], mood


def next_sentence_partners(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(partner (N,), is_next (N,)): whose B follows document i's A; its own for half of the documents."""
    own = torch.arange(n)
    is_next = (torch.randperm(n, generator=g) < (n + 1) // 2).long()  # exactly half (one more if N is odd)
    other = (own + torch.randint(1, max(n, 2), (n,), generator=g)) % n  # any document but i (i itself if N = 1)
    return torch.where(is_next.bool(), own, other), is_next


def mask_tokens(
    ids: torch.Tensor,
    generator: torch.Generator,
    vocab_size: int,
    rate: float = 0.15,
    special_ids: Sequence[int] = tuple(range(NUM_SPECIALS)),
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of (N, W) ids -> (masked ids, mlm_labels), both (N, W).

    Each row chooses floor(rate * its non-special tokens + U[0, 1)) of them: `rate` on average, and at
    least one in a row of 1 / rate such tokens or more. A chosen token becomes MASK (80%), a random
    non-special token (10%) or stays (10%); mlm_labels hold its original id, IGNORE_INDEX elsewhere.
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate={rate}: must be in [0, 1]")
    g, specials = generator, torch.tensor(list(special_ids))
    candidate = ~torch.isin(ids, specials)  # (N, W)
    count = (candidate.sum(1) * rate + torch.rand(ids.shape[0], generator=g)).floor().long()  # (N,)
    score = torch.rand(ids.shape, generator=g).masked_fill(~candidate, 2.0)  # non-candidates sort last
    chosen = score.argsort(1).argsort(1) < count.unsqueeze(1)  # (N, W) the first `count` of a random order
    action = torch.rand(ids.shape, generator=g)
    pool = torch.tensor([i for i in range(vocab_size) if i not in set(special_ids)])
    random_tokens = pool[torch.randint(len(pool), ids.shape, generator=g)]
    masked = torch.where(chosen & (action < 0.8), MASK, ids)
    masked = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, masked)
    return masked, torch.where(chosen, ids, IGNORE_INDEX)


class Pretraining(SentimentLexiconSizes, SplitDataModule):
    """MLM + NSP documents over the `Sentiment` lexicon, deterministic from `seed`.

    Batches are `{"ids", "segments", "mlm_labels", "is_next"}`. Masks are drawn once per split in
    `setup()` (static masking, like the original BERT data), so every epoch and every run agree.

    Args:
        mask_rate: share of the non-special tokens chosen for MLM.
        Others: the lexicon's sizes (SentimentLexiconSizes) and those of every task (SplitDataModule; the lengths
            count the words of each of a document's two segments).
    """

    family: ClassVar[str] = "pretraining"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "ids"
    trim: ClassVar[dict[str, str]] = {"ids": "ids", "segments": "ids", "mlm_labels": "ids"}

    def __init__(self, mask_rate: float = 0.15, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mask_rate = mask_rate
        if not 0 < mask_rate <= 1:
            raise ConfigError(f"data.mask_rate={mask_rate}: must be in (0, 1]")
        capacity = min(distinct_sequences(len(self.lexicon), *self.lengths["train"]) ** 2, CAPACITY_CAP)
        self.check_lengths(1, capacity, "raise the lengths or the lexicon sizes")

    @property
    def vocab(self) -> Vocab:
        return self.lexicon.vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def max_length(self) -> int:
        """Longest encoded input, [CLS] A [SEP] B [SEP] (the model's positional table size)."""
        return 2 * max(hi for _, hi in self.lengths.values()) + 3

    def input_keys(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Keys of the unmasked inputs, so that a held-out document stays out of training whatever its masks."""
        labels = tensors["mlm_labels"]
        return sequence_keys(torch.where(labels != IGNORE_INDEX, labels, tensors["ids"]))

    def generate(self, split: str) -> dict[str, torch.Tensor]:
        g, n = split_generator(self.seed, split), self.sizes[split]
        first, second, _ = documents(self.lexicon, g, n, *self.lengths[split])
        partner, is_next = next_sentence_partners(g, n)
        ids, segments = bert_inputs(first, second[partner])
        masked, mlm_labels = mask_tokens(ids, g, self.vocab_size, self.mask_rate)
        return {"ids": masked, "segments": segments, "mlm_labels": mlm_labels, "is_next": is_next}
