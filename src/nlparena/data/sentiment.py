"""Pure, vectorised generators for the sentiment tasks (torch only, no Lightning).

Sentences are words of four kinds: neutral (`w3`), positive (`good1`), negative (`bad0`) and negators
(`not0`). A negator flips the polarity of the next word if that word is a sentiment word (`not0 good3`
is negative); nothing else carries. A sentence is `negative` or `positive` when only that polarity
occurs, `mixed` when both do, `neutral` when neither. Since one negator turns a whole label around,
the classes are easy to confuse for a model that counts words.

Shapes: N examples, S sentence width (PAD after each sentence), W encoded width ([CLS] A [SEP] (B [SEP])).
"""

from __future__ import annotations

import torch

from nlparena.data.tasks import CAPACITY_CAP, compact, distinct_sequences, padding_mask, random_lengths
from nlparena.data.vocab import CLS, PAD, SEP, Vocab

NEUTRAL_WORD, POSITIVE_WORD, NEGATIVE_WORD, NEGATOR = 0, 1, 2, 3  # word kinds, in `SentimentLexicon.kinds` order
# Word-kind probabilities of SentimentTask: with lengths 4..12 the four classes come out at about
# 25 / 20 / 25 / 30 %, and about one sentiment word in seven follows a negator.
WORD_KIND_PROBS = (0.65, 0.10, 0.10, 0.15)

SENTIMENT_CLASSES = ("negative", "neutral", "positive", "mixed")
NEGATIVE, NEUTRAL, POSITIVE, MIXED = range(4)
PAIR_CLASSES = ("agree", "disagree", "unrelated")
AGREE, DISAGREE, UNRELATED = range(3)


class SentimentLexicon:
    """The words of the sentiment tasks and their ids; the same sizes always give the same `Vocab`."""

    def __init__(
        self, num_positive: int = 8, num_negative: int = 8, num_neutral: int = 16, num_negators: int = 2
    ) -> None:
        words = {
            NEUTRAL_WORD: [f"w{i}" for i in range(num_neutral)],
            POSITIVE_WORD: [f"good{i}" for i in range(num_positive)],
            NEGATIVE_WORD: [f"bad{i}" for i in range(num_negative)],
            NEGATOR: [f"not{i}" for i in range(num_negators)],
        }
        order = (POSITIVE_WORD, NEGATIVE_WORD, NEUTRAL_WORD, NEGATOR)  # vocabulary order: good*, bad*, w*, not*
        self.vocab = Vocab([word for kind in order for word in words[kind]])
        # ids of each word kind, indexed by kind
        self.kinds = [torch.tensor([self.vocab.index[w] for w in words[kind]]) for kind in range(4)]
        self.neutral, self.positive, self.negative, self.negators = self.kinds

    def __len__(self) -> int:
        """Number of words (specials not counted)."""
        return sum(len(ids) for ids in self.kinds)

    def words(self, g: torch.Generator, kinds: torch.Tensor) -> torch.Tensor:
        """(N, S) word kinds (-1 for PAD) -> (N, S) ids, a uniformly random word of each kind."""
        ids = torch.full_like(kinds, PAD)
        for kind, choices in enumerate(self.kinds):  # four kinds, not a loop over examples
            pick = choices[torch.randint(len(choices), kinds.shape, generator=g)]
            ids = torch.where(kinds == kind, pick, ids)
        return ids

    def sentences(self, g: torch.Generator, n: int, lo: int, hi: int) -> torch.Tensor:
        """(N, hi) ids, PAD after a length drawn from [lo, hi]; word kinds drawn with `WORD_KIND_PROBS`."""
        lengths = random_lengths(g, n, lo, hi)
        kinds = torch.multinomial(torch.tensor(WORD_KIND_PROBS), n * hi, replacement=True, generator=g)
        kinds = kinds.view(n, hi).masked_fill(~padding_mask(lengths, hi), -1)  # (N, hi)
        return self.words(g, kinds)

    def polarities(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, S) ids -> (N, S) +1 / -1 for positive / negative words after negation, 0 elsewhere."""
        polarity = torch.isin(ids, self.positive).long() - torch.isin(ids, self.negative).long()
        return torch.where(after(torch.isin(ids, self.negators)), -polarity, polarity)


def after(mask: torch.Tensor) -> torch.Tensor:
    """(N, S) -> (N, S) True where the previous position is True (shifted right by one)."""
    return torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], dim=1)


def sentiment_labels(polarity: torch.Tensor) -> torch.Tensor:
    """(N, S) word polarities -> (N,) class index in `SENTIMENT_CLASSES`."""
    has_pos, has_neg = (polarity > 0).any(1), (polarity < 0).any(1)
    return torch.where(has_pos & has_neg, MIXED, NEUTRAL + has_pos.long() - has_neg.long())


def pair_labels(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(N,) sentiment classes of two sentences -> (N,) class index in `PAIR_CLASSES`."""
    polar = ((first == NEGATIVE) | (first == POSITIVE)) & ((second == NEGATIVE) | (second == POSITIVE))
    return torch.where(polar, torch.where(first == second, AGREE, DISAGREE), UNRELATED)


def bert_inputs(first: torch.Tensor, second: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S) sentences -> ids, segments (N, W): `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, PAD after.

    Segment 0 covers CLS, A and the first SEP; segment 1 covers B and the last SEP (0 again on PAD).
    """
    column = torch.full_like(first[:, :1], CLS)  # (N, 1)
    parts = [column, first, column.new_full(column.shape, SEP)]
    if second is not None:
        parts += [second, column.new_full(column.shape, SEP)]
    ids = compact(torch.cat(parts, dim=1))  # (N, W) real tokens moved to the front, in order
    first_end = (first != PAD).sum(1, keepdim=True) + 1  # (N, 1) position of the first SEP
    segments = ((torch.arange(ids.shape[1]) > first_end) & (ids != PAD)).long()
    return ids, segments


class SentimentTask:
    """One sentence -> negative / neutral / positive / mixed."""

    class_names = SENTIMENT_CLASSES
    min_length = 1

    def __init__(self, lexicon: SentimentLexicon) -> None:
        self.lexicon = lexicon

    def max_input_length(self, max_sentence_length: int) -> int:
        return max_sentence_length + 2  # + CLS, SEP

    def capacity(self, lo: int, hi: int) -> int:
        return distinct_sequences(len(self.lexicon), lo, hi)

    def sample(self, g: torch.Generator, n: int, lo: int, hi: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """((sentence (N, hi),), labels (N,))."""
        sentence = self.lexicon.sentences(g, n, lo, hi)
        return (sentence,), sentiment_labels(self.lexicon.polarities(sentence))


class SentimentPairTask(SentimentTask):
    """Two sentences -> agree (both positive or both negative) / disagree (one each) / unrelated (otherwise)."""

    class_names = PAIR_CLASSES

    def max_input_length(self, max_sentence_length: int) -> int:
        return 2 * max_sentence_length + 3  # + CLS, SEP, SEP

    def capacity(self, lo: int, hi: int) -> int:
        return min(super().capacity(lo, hi) ** 2, CAPACITY_CAP)

    def sample(self, g: torch.Generator, n: int, lo: int, hi: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """((first (N, hi), second (N, hi)), labels (N,))."""
        (first,), first_labels = super().sample(g, n, lo, hi)
        (second,), second_labels = super().sample(g, n, lo, hi)
        return (first, second), pair_labels(first_labels, second_labels)
