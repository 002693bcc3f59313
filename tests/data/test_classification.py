import pytest
import torch

from nlparena.data import Sentiment, SentimentPair
from nlparena.data.classification import class_quotas, take_quotas
from nlparena.data.sentiment import (
    PAIR_CLASSES,
    SENTIMENT_CLASSES,
    SentimentLexicon,
    SentimentTask,
    bert_inputs,
    sentiment_labels,
)
from nlparena.data.tasks import split_generator
from nlparena.data.vocab import CLS, PAD, SEP
from nlparena.errors import ConfigError

SIZES = {"train_size": 300, "val_size": 60, "test_size": 50, "batch_size": 7}
LEXICON = SentimentLexicon()


def label_by_hand(words: list[str]) -> str:
    """The labelling rule, one word at a time."""
    seen = set()
    for i, word in enumerate(words):
        if word.startswith(("good", "bad")):
            negated = i > 0 and words[i - 1].startswith("not")
            seen.add(word.startswith("good") != negated)
    return {frozenset(): "neutral", frozenset({True}): "positive", frozenset({False}): "negative"}.get(
        frozenset(seen), "mixed"
    )


def pair_label_by_hand(first: list[str], second: list[str]) -> str:
    a, b = label_by_hand(first), label_by_hand(second)
    if {a, b} <= {"positive", "negative"}:
        return "agree" if a == b else "disagree"
    return "unrelated"


def split_sentences(ids: list[int], vocab) -> list[list[str]]:
    """Decoded sentences between CLS and each SEP."""
    words, sentences = [], []
    for i in ids[1:]:
        if i == SEP:
            sentences.append(words)
            words = []
        elif i != PAD:
            words.append(vocab.tokens[i])
    return sentences


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("w0 w3 w15", "neutral"),
        ("good0 w1", "positive"),
        ("bad7", "negative"),
        ("good0 w2 bad0", "mixed"),
        ("not0 good1", "negative"),
        ("good1 not0 bad2", "positive"),
        ("not1 bad3 w2", "positive"),
        ("not0 not1 good0", "negative"),  # only the negator right before a sentiment word counts
        ("not0 w4 good0", "positive"),  # a neutral word in between ends the negation
        ("not0 bad0 bad1", "mixed"),  # a negator flips the next word only
        ("bad0 not1", "negative"),  # a trailing negator flips nothing
        ("not0", "neutral"),
    ],
)
def test_labels_follow_the_negation_rule(text, label):
    ids = torch.tensor([[*LEXICON.vocab.encode(text), PAD, PAD]])
    assert SENTIMENT_CLASSES[int(sentiment_labels(LEXICON.polarities(ids))[0])] == label


def test_vectorised_labels_match_a_word_by_word_reimplementation():
    (sentences,), labels = SentimentTask(LEXICON).sample(split_generator(0, "train"), 400, 1, 9)
    for row, label in zip(sentences, labels.tolist(), strict=True):
        assert SENTIMENT_CLASSES[label] == label_by_hand(LEXICON.vocab.decode(row).split())


def test_pair_labels_match_a_word_by_word_reimplementation():
    dm = SentimentPair(seed=4, **SIZES)
    dm.setup()
    data = dm.splits["val"].tensors
    for ids, label in zip(data["ids"].tolist(), data["labels"].tolist(), strict=True):
        first, second = split_sentences(ids, dm.vocab)
        assert PAIR_CLASSES[label] == pair_label_by_hand(first, second)


@pytest.mark.parametrize(("cls", "names"), [(Sentiment, SENTIMENT_CLASSES), (SentimentPair, PAIR_CLASSES)])
def test_every_class_occurs_often(cls, names):
    dm = cls(seed=0, **SIZES)
    dm.setup()
    counts = torch.bincount(dm.splits["train"].tensors["labels"], minlength=dm.num_classes)
    assert dm.class_names == list(names) and dm.num_classes == len(names)
    assert counts.min() >= 0.08 * counts.sum()


def test_class_quotas_share_out_every_example():
    assert class_quotas(10, [1, 1, 1]).tolist() == [4, 3, 3]
    assert class_quotas(7, [0, 2, 5]).tolist() == [0, 2, 5]
    assert take_quotas(torch.tensor([2, 0, 2, 1, 2, 0]), torch.tensor([1, 1, 2])).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(("cls", "weights"), [(Sentiment, [4, 1, 2, 3]), (SentimentPair, [1, 1, 2])])
def test_class_weights_give_the_wanted_proportions(cls, weights):
    dm = cls(seed=1, class_weights=weights, **{**SIZES, "train_size": 800, "val_size": 100})
    dm.setup()
    wanted = torch.tensor(weights, dtype=torch.float) / sum(weights)
    val = torch.bincount(dm.splits["val"].tensors["labels"], minlength=len(weights))
    assert val.tolist() == (wanted * 100).round().long().tolist()  # held-out splits: exact quotas
    train = torch.bincount(dm.splits["train"].tensors["labels"], minlength=len(weights)).float()
    torch.testing.assert_close(train / train.sum(), wanted, atol=0.02, rtol=0)  # minus held-out duplicates


def test_a_zero_class_weight_leaves_the_class_out():
    dm = Sentiment(seed=0, class_weights=[1, 0, 1, 1], **SIZES)
    dm.setup()
    assert SENTIMENT_CLASSES.index("neutral") not in dm.splits["train"].tensors["labels"].tolist()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1, 1, 1], "need 4 weights"),
        ([1, -1, 1, 1], "weights must not be negative"),
        ([0, 0, 0, 0], "weights must not sum to 0"),
    ],
)
def test_bad_class_weights_are_refused(weights, message):
    with pytest.raises(ConfigError, match=rf"data\.class_weights=.*: {message}"):
        Sentiment(class_weights=weights)


def test_a_class_that_the_lengths_cannot_make_is_refused():
    dm = Sentiment(train_lengths=(1, 1), class_weights=[1, 1, 1, 1], train_size=50, val_size=5, test_size=5)
    with pytest.raises(ConfigError, match="cannot fill class 'mixed'"):  # one word is never mixed
        dm.setup()


def test_inputs_are_encoded_as_bert_expects():
    a = torch.tensor([[7, 8, PAD], [9, PAD, PAD]])
    b = torch.tensor([[10, 13], [11, PAD]])
    ids, segments = bert_inputs(a)
    assert ids.tolist() == [[CLS, 7, 8, SEP], [CLS, 9, SEP, PAD]] and not segments.any()
    ids, segments = bert_inputs(a, b)
    assert ids.tolist() == [[CLS, 7, 8, SEP, 10, 13, SEP], [CLS, 9, SEP, 11, SEP, PAD, PAD]]
    assert segments.tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]]


@pytest.mark.parametrize(("cls", "seps"), [(Sentiment, 1), (SentimentPair, 2)])
def test_every_example_is_cls_sentences_and_seps_then_padding(cls, seps):
    dm = cls(seed=2, **SIZES)
    dm.setup()
    data = dm.splits["test"].tensors
    for ids, segments in zip(data["ids"].tolist(), data["segments"].tolist(), strict=True):
        length = sum(t != PAD for t in ids)
        assert ids[0] == CLS and ids[length - 1] == SEP and set(ids[length:]) <= {PAD}
        sep_at = [i for i, t in enumerate(ids) if t == SEP]
        assert len(sep_at) == seps and CLS not in ids[1:]
        assert segments == [0] * (sep_at[0] + 1) + [1] * (length - sep_at[0] - 1) + [0] * (len(ids) - length)


def test_max_length_is_the_longest_encoded_input_of_any_split():
    single = Sentiment(seed=0, test_lengths=(3, 15), **SIZES)
    pair = SentimentPair(seed=0, val_lengths=(2, 14), **SIZES)
    assert (single.max_length, pair.max_length) == (15 + 2, 2 * 14 + 3)
    for dm in (single, pair):
        dm.setup()
        assert max(s.tensors["ids"].shape[1] for s in dm.splits.values()) == dm.max_length


def test_a_batch_is_one_slice_trimmed_to_its_longest_input():
    dm = SentimentPair(seed=0, train_lengths=(1, 9), **SIZES)
    dm.setup()
    whole, size = dm.splits["val"].tensors, SIZES["batch_size"]
    widths = []
    for start, batch in zip(range(0, SIZES["val_size"], size), dm.val_dataloader(), strict=True):
        width = int((batch["ids"] != PAD).sum(1).max())
        widths.append(width)
        assert batch["ids"].shape == batch["segments"].shape == (len(batch["labels"]), width)
        assert torch.equal(batch["ids"], whole["ids"][start : start + size, :width])
        assert torch.equal(batch["segments"], whole["segments"][start : start + size, :width])
        assert torch.equal(batch["labels"], whole["labels"][start : start + size])
    assert min(widths) < whole["ids"].shape[1]  # some batch is narrower than the split: PAD columns were cut


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"data\.num_neutral=0: must be at least 1"):
        Sentiment(num_neutral=0)
    with pytest.raises(ConfigError, match=r"data\.val_lengths=\[0, 4\]"):
        SentimentPair(val_lengths=(0, 4))
    with pytest.raises(ConfigError, match=r"data\.train_size=0: must be at least 1"):
        Sentiment(train_size=0)
    with pytest.raises(ConfigError, match="too few distinct inputs"):
        Sentiment(train_lengths=(1, 1), val_size=20, test_size=20)
