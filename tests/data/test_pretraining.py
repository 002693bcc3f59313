import pytest
import torch

from nlparena.data import Pretraining, Sentiment
from nlparena.data.pretraining import (
    IGNORE_INDEX,
    documents,
    mask_tokens,
    next_sentence_partners,
)
from nlparena.data.sentiment import SentimentLexicon, SentimentTask, sentiment_labels
from nlparena.data.tasks import split_generator
from nlparena.data.vocab import CLS, MASK, NUM_SPECIALS, PAD, SEP
from nlparena.errors import ConfigError

SIZES = {"train_size": 300, "val_size": 60, "test_size": 50, "batch_size": 7}
VOCAB = 37


def unmasked(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The inputs before masking: mlm_labels hold the original id wherever a token was chosen."""
    labels = tensors["mlm_labels"]
    return torch.where(labels != IGNORE_INDEX, labels, tensors["ids"])


def rows(ids: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(t for t in row if t != PAD) for row in ids.tolist()]


def specials_and_words(n: int = 2400, width: int = 120) -> torch.Tensor:
    """(n, width) random words framed as [CLS] A [SEP] B [SEP], PAD after a random length: ~200k words."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(NUM_SPECIALS, VOCAB, (n, width), generator=g)
    lengths = torch.randint(width // 2, width + 1, (n,), generator=g)
    ids[:, 0], ids[:, width // 3] = CLS, SEP
    ids[torch.arange(n), lengths - 1] = SEP
    return ids.masked_fill(torch.arange(width) >= lengths.unsqueeze(1), PAD)


@pytest.mark.parametrize("sizes", [{}, {"num_positive": 3, "num_negative": 5, "num_neutral": 7, "num_negators": 1}])
def test_pretraining_vocabulary_is_the_sentiment_vocabulary(sizes):
    pre, fine = Pretraining(**sizes), Sentiment(**sizes)
    assert pre.vocab.tokens == fine.vocab.tokens and pre.vocab_size == fine.vocab_size
    assert pre.pad_id == fine.pad_id == PAD


def test_mask_tokens_chooses_the_rate_and_splits_80_10_10():
    ids = specials_and_words()
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(1), VOCAB)
    candidate = ids >= NUM_SPECIALS
    chosen = labels != IGNORE_INDEX
    assert candidate.sum() > 190_000
    assert abs(chosen.sum() / candidate.sum() - 0.15) < 0.005
    n = chosen.sum()
    pool = VOCAB - NUM_SPECIALS  # a random replacement can draw the original token back
    to_mask = (masked[chosen] == MASK).sum() / n
    to_other = ((masked[chosen] != MASK) & (masked[chosen] != ids[chosen])).sum() / n
    kept = (masked[chosen] == ids[chosen]).sum() / n
    assert abs(to_mask - 0.8) < 0.01
    assert abs(to_other - 0.1 * (1 - 1 / pool)) < 0.01
    assert abs(kept - 0.1 * (1 + 1 / pool)) < 0.01
    assert masked[chosen & (masked != MASK)].min() >= NUM_SPECIALS  # replacements are never specials


def test_mask_rate_holds_for_short_sequences_too():
    ids = torch.randint(NUM_SPECIALS, VOCAB, (40_000, 5), generator=torch.Generator().manual_seed(3))
    _, labels = mask_tokens(ids, torch.Generator().manual_seed(4), VOCAB)
    assert abs(float((labels != IGNORE_INDEX).float().mean()) - 0.15) < 0.005  # not rounded to 1 of 5 per row


def test_mask_tokens_never_chooses_specials_and_labels_only_chosen_positions():
    ids = specials_and_words(300, 40)
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(2), VOCAB, rate=0.3)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & (ids < NUM_SPECIALS)).any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes, specials included
    assert (chosen.sum(1) >= 1).all()  # every row of 1 / rate words or more gets an MLM target


def test_mask_tokens_respects_the_given_specials():
    ids = torch.full((50, 30), 9)
    masked, labels = mask_tokens(ids, torch.Generator().manual_seed(0), 12, rate=0.5, special_ids=(0, 9))
    assert (labels == IGNORE_INDEX).all() and torch.equal(masked, ids)


def test_next_sentence_pairs_are_half_true_and_false_ones_come_from_another_document():
    partner, is_next = next_sentence_partners(torch.Generator().manual_seed(0), 501)
    assert int(is_next.sum()) == 251
    own = torch.arange(501)
    assert torch.equal(partner[is_next == 1], own[is_next == 1])
    assert (partner[is_next == 0] != own[is_next == 0]).all()


def test_true_next_segment_is_the_documents_own_b():
    dm = Pretraining(seed=3, **SIZES)
    dm.setup()
    data, n = dm.splits["val"].tensors, SIZES["val_size"]
    g = split_generator(3, "val")  # replay the generation: documents, then partners
    first, second, _ = documents(dm.lexicon, g, n, *dm.lengths["train"])
    partner, is_next = next_sentence_partners(g, n)
    assert torch.equal(data["is_next"], is_next) and abs(float(is_next.float().mean()) - 0.5) < 0.01
    own_a, own_b = rows(first), rows(second)
    for i, ids in enumerate(unmasked(data).tolist()):
        sep = [j for j, t in enumerate(ids) if t == SEP]
        a, b = tuple(ids[1 : sep[0]]), tuple(ids[sep[0] + 1 : sep[1]])
        assert a == own_a[i]
        assert b == own_b[partner[i]]  # its own B when is_next, another document's otherwise
        assert (partner[i] == i) == bool(is_next[i])


def test_a_documents_two_sentences_share_their_sentiment_class_and_are_drawn_as_sentiments_are():
    lexicon = SentimentLexicon()
    first, second, classes = documents(lexicon, torch.Generator().manual_seed(0), 4000, 4, 12)
    assert torch.equal(sentiment_labels(lexicon.polarities(first)), classes)
    assert torch.equal(sentiment_labels(lexicon.polarities(second)), classes)
    assert not torch.equal(first, second)  # B is another sentence of the class, not a copy of A
    assert (first != second).any(1).float().mean() > 0.99
    # A is a Sentiment sentence: the class shares and word-kind shares of the task's own draw
    (task_sentences,), task_classes = SentimentTask(lexicon).sample(torch.Generator().manual_seed(1), 4000, 4, 12)
    shares = torch.bincount(classes, minlength=4) / 4000
    torch.testing.assert_close(shares, torch.bincount(task_classes, minlength=4) / 4000, atol=0.03, rtol=0)
    for kind in lexicon.kinds:
        ours, theirs = (
            torch.isin(first, kind).sum() / (first != PAD).sum(),
            torch.isin(task_sentences, kind).sum() / (task_sentences != PAD).sum(),
        )
        assert abs(float(ours - theirs)) < 0.01


def test_a_class_with_a_single_sentence_still_gets_a_second_one():
    first, second, classes = documents(SentimentLexicon(), torch.Generator().manual_seed(0), 1, 4, 12)
    assert first.shape == second.shape == (1, 12) and classes.shape == (1,)


def test_batches_hold_masked_pairs_trimmed_to_their_longest_input():
    dm = Pretraining(seed=0, train_lengths=(1, 9), **SIZES)
    dm.setup()
    whole, size = dm.splits["val"].tensors, SIZES["batch_size"]
    widths = []
    for start, batch in zip(range(0, SIZES["val_size"], size), dm.val_dataloader(), strict=True):
        assert set(batch) == {"ids", "segments", "mlm_labels", "is_next"}
        width = int((batch["ids"] != PAD).sum(1).max())
        widths.append(width)
        for key in ("ids", "segments", "mlm_labels"):
            assert torch.equal(batch[key], whole[key][start : start + size, :width])
        assert torch.equal(batch["is_next"], whole["is_next"][start : start + size])
        assert (batch["ids"][:, 0] == CLS).all() and batch["segments"].max() == 1
    assert min(widths) < whole["ids"].shape[1] <= dm.max_length == 2 * 9 + 3


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"data\.mask_rate=0: must be in \(0, 1\]"):
        Pretraining(mask_rate=0)
    with pytest.raises(ConfigError, match=r"data\.train_lengths=\[3, 2\]"):
        Pretraining(train_lengths=(3, 2))
    with pytest.raises(ConfigError, match=r"data\.num_negators=0: must be at least 1"):
        Pretraining(num_negators=0)
    with pytest.raises(ConfigError, match="too few distinct inputs"):
        Pretraining(train_lengths=(1, 1), num_neutral=1, num_positive=1, num_negative=1, num_negators=1)
