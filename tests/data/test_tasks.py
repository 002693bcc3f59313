import torch

from nlparena.data.tasks import (
    CopyTask,
    LanguagePairTask,
    ReverseTask,
    SortTask,
    append_eos,
    compact,
    sequence_keys,
    split_generator,
)
from nlparena.data.vocab import EOS, NUM_SPECIALS, PAD

S = NUM_SPECIALS  # id of symbol "0"


def test_reverse_target_is_source_backwards_then_eos():
    src = torch.tensor([[S + 1, S + 2, S + 3, PAD], [S + 4, S + 5, PAD, PAD]])
    lengths = torch.tensor([3, 2])
    tgt = append_eos(ReverseTask(6).target(src, lengths), lengths)
    assert tgt.tolist() == [[S + 3, S + 2, S + 1, EOS, PAD], [S + 5, S + 4, EOS, PAD, PAD]]


def test_sort_target_is_sorted_and_keeps_padding_at_the_end():
    src = torch.tensor([[S + 3, S + 1, S + 2, PAD]])
    tgt = SortTask(6).target(src, torch.tensor([3]))
    assert tgt.tolist() == [[S + 1, S + 2, S + 3, PAD]]


def test_generated_copy_sources_respect_lengths_and_symbols():
    src, tgt = CopyTask(5).generate(split_generator(0, "train"), 200, 2, 6)
    lengths = (src != PAD).sum(1)
    assert lengths.min() >= 2 and lengths.max() <= 6
    real = src[src != PAD]
    assert real.min() >= S and real.max() < S + 5
    assert torch.equal(tgt[:, :-1].masked_fill(tgt[:, :-1] == EOS, PAD), src)
    assert torch.equal(tgt.gather(1, lengths.unsqueeze(1)).squeeze(1), torch.full((200,), EOS))


def test_compact_moves_tokens_left_in_order():
    assert compact(torch.tensor([[PAD, 7, PAD, 8], [9, PAD, PAD, PAD]])).tolist() == [[7, 8], [9, PAD]]


def test_sequence_keys_ignore_padding_width_and_tell_sequences_apart():
    a = sequence_keys(torch.tensor([[7, 8, PAD, PAD], [8, 7, PAD, PAD]]))
    b = sequence_keys(torch.tensor([[7, 8]]))
    assert a[0] == b[0] and a[1] != a[0]


def test_language_pair_moves_verb_to_the_end_and_adds_agreement():
    task = LanguagePairTask(6, 4, 5, lexicon_seed=3)
    src, tgt = task.generate(split_generator(0, "train"), 300, 3, 9)
    vocab = task.vocab
    for s, t in zip(src[:50], tgt[:50], strict=True):
        words, out = vocab.decode(s).split(), vocab.decode(t).split()
        verb = next(w for w in words if w.startswith("V"))
        assert out[-1] in ("agr.sg", "agr.pl")
        assert out[-2] == vocab.tokens[int(task.lexicon[vocab.index[verb], 0])]
        subject_plural = words[words.index(verb) - 1] == "PL"
        assert out[-1] == ("agr.pl" if subject_plural else "agr.sg")
    # alignments are not one-to-one: targets are longer than sources on average
    assert (tgt != PAD).sum() > (src != PAD).sum() * 1.2


def test_language_pair_lexicon_is_a_permutation_fixed_by_the_seed():
    a, b = LanguagePairTask(6, 4, 5, lexicon_seed=1), LanguagePairTask(6, 4, 5, lexicon_seed=2)
    firsts = a.lexicon[:, 0][a.lexicon[:, 0] != PAD]
    assert len(set(firsts.tolist())) == len(firsts)  # different source words map to different target words
    assert not torch.equal(a.lexicon, b.lexicon)
