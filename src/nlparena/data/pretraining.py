"""The pre-training corpus for MLM + NSP over the sentiment lexicon, and BERT's token masking.

A document is two segments A and B: sentences drawn exactly as `Sentiment` draws its sentences, and of the same
sentiment class (negative, neutral, positive or mixed), the way the sentences of one review agree in tone. No label
is ever shown. What the corpus carries is that agreement: the word that fits a masked slot depends on the polarity
the rest of the document means once negation is applied (in a positive document `not0 [MASK]` is a `bad*` word),
and NSP can tell a document's own B from another document's only by comparing what A and B mean. Learning either
means learning the negators' scope, which is what a classifier of these sentences needs. Same lexicon sizes as
`Sentiment` give the same `Vocab`, so a model pre-trained here can be fine-tuned there.

Shapes: N documents, S segment width (PAD after each segment), W encoded width ([CLS] A [SEP] B [SEP]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from nlparena.data.classification import SentimentLexiconSizes
from nlparena.data.sentiment import SENTIMENT_CLASSES, SentimentLexicon, SentimentTask, bert_inputs
from nlparena.data.splits import SplitDataModule
from nlparena.data.tasks import CAPACITY_CAP, distinct_sequences, sequence_keys, split_generator
from nlparena.data.vocab import MASK, NUM_SPECIALS, Vocab
from nlparena.errors import ConfigError

IGNORE_INDEX = -100  # mlm_labels where nothing is to be predicted (cross_entropy's default ignore_index)


def documents(
    lexicon: SentimentLexicon, g: torch.Generator, n: int, lo: int, hi: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A (N, hi), B (N, hi), class (N,)): two `Sentiment` sentences of the same class (`SENTIMENT_CLASSES`).

    B is drawn from a pool of the N As and 2N more sentences, uniformly among those of A's class (so that every
    class of A has one: with few documents B may be A itself)."""
    task = SentimentTask(lexicon)
    (first,), classes = task.sample(g, n, lo, hi)
    (more,), more_classes = task.sample(g, 2 * n, lo, hi)
    pool, pool_classes = torch.cat([first, more]), torch.cat([classes, more_classes])
    second = torch.empty_like(first)
    for c in range(len(SENTIMENT_CLASSES)):  # four classes, not a loop over documents
        mine, theirs = (classes == c).nonzero().squeeze(1), (pool_classes == c).nonzero().squeeze(1)
        if len(mine) == 0:
            continue
        second[mine] = pool[theirs[torch.randint(len(theirs), (len(mine),), generator=g)]]
    return first, second, classes


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
    mask_id: int = MASK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of (N, W) ids -> (masked ids, mlm_labels), both (N, W).

    Each row chooses floor(rate * its non-special tokens + U[0, 1)) of them: `rate` on average, and at
    least one in a row of 1 / rate such tokens or more. A chosen token becomes MASK (80%), a random
    non-special token (10%) or stays (10%); mlm_labels hold its original id, IGNORE_INDEX elsewhere.
    `special_ids` and `mask_id` are those of the vocabulary (a tokenizer read from a file has its own).
    """
    if not 0 <= rate <= 1:
        raise ValueError(f"rate={rate}: must be in [0, 1]")
    g, specials = generator, torch.tensor(list(special_ids))
    candidate = ~torch.isin(ids, specials)  # (N, W)
    count = (candidate.sum(1) * rate + torch.rand(ids.shape[0], generator=g)).floor().long()  # (N,)
    score = torch.rand(ids.shape, generator=g).masked_fill(~candidate, 2.0)  # non-candidates sort last
    chosen = score.argsort(1).argsort(1) < count.unsqueeze(1)  # (N, W) the first `count` of a random order
    action = torch.rand(ids.shape, generator=g)
    pool = torch.ones(vocab_size, dtype=torch.bool)
    pool[specials[specials < vocab_size]] = False
    pool = pool.nonzero().squeeze(1)  # the non-special ids, ascending
    random_tokens = pool[torch.randint(len(pool), ids.shape, generator=g)]
    masked = torch.where(chosen & (action < 0.8), mask_id, ids)
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
