from dataclasses import dataclass, replace

import pytest
import torch

from nlparena.data.vocab import BOS, EOS, NUM_SPECIALS, PAD
from nlparena.networks.decoding import beam_search, greedy_decode, select_beams, sequence_log_prob
from nlparena.networks.layers import shift_right
from nlparena.networks.positions import POSITION_CHOICES
from nlparena.networks.rnn import AttentionConfig, Seq2Seq, Seq2SeqAttention, Seq2SeqConfig
from nlparena.networks.transformer import Transformer, TransformerConfig
from tests.conftest import BATCH, D_FF, D_MODEL, HEADS, MAX_LEN, SRC_LEN, TGT_LEN, VOCAB
from tests.networks.test_rnn import TINY as TINY_RNN


def random_transformer(seed: int) -> Transformer:
    """A random network whose outputs depend on the source (weights scaled up, untied output)."""
    torch.manual_seed(seed)
    config = TransformerConfig(d_model=D_MODEL, n_heads=HEADS, d_ff=D_FF, dropout=0.0, share_embeddings=False)
    net = Transformer(config, VOCAB, MAX_LEN)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.mul_(3)
    return net.eval()


def random_rnn(cls: type, config: Seq2SeqConfig, **attention: AttentionConfig):
    def build(seed: int):
        torch.manual_seed(seed)
        net = cls(config, VOCAB, MAX_LEN, **attention)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(4)
        return net.eval()

    return build


NETWORKS = {
    "transformer": random_transformer,
    "seq2seq-lstm": random_rnn(Seq2Seq, replace(TINY_RNN, cell="lstm", num_layers=2)),
    "bahdanau-gru": random_rnn(Seq2SeqAttention, TINY_RNN, attention=AttentionConfig("bahdanau")),
    "general-feeding-lstm": random_rnn(
        Seq2SeqAttention, replace(TINY_RNN, cell="lstm"), attention=AttentionConfig("general", input_feeding=True)
    ),
}


def sources(seed: int, batch: int = BATCH) -> torch.Tensor:
    torch.manual_seed(seed)
    src = torch.randint(NUM_SPECIALS, VOCAB, (batch, SRC_LEN))
    src[0, -2:] = PAD  # one shorter row
    return src


@pytest.mark.parametrize("name", NETWORKS)
def test_beam_size_one_equals_greedy(name):
    for seed in range(5):
        net, src = NETWORKS[name](seed), sources(seed)
        beam, _ = beam_search(net, src, max_len=MAX_LEN - 1, beam_size=1)
        assert torch.equal(beam, greedy_decode(net, src, max_len=MAX_LEN - 1))


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("beam_size", [2, 4])
def test_beam_search_never_scores_below_greedy(name, beam_size):
    better = 0
    for seed in range(10):
        net, src = NETWORKS[name](seed), sources(seed, batch=8)
        greedy = sequence_log_prob(net, src, greedy_decode(net, src, max_len=MAX_LEN - 1))
        beam, score = beam_search(net, src, max_len=MAX_LEN - 1, beam_size=beam_size)
        torch.testing.assert_close(score, sequence_log_prob(net, src, beam))  # the score is the model's
        assert (score >= greedy - 1e-4).all()
        better += int((score > greedy + 1e-4).sum())
    assert better > 0  # the search does find more likely outputs than greedy on some rows


@dataclass
class History:
    tokens: torch.Tensor  # (B, t) everything decoded so far, BOS first


class ScriptedDecoder:
    """A fake network whose next-token distribution depends on the whole decoded prefix, read from the cache.

    If beam states were not reordered with the beams, a beam would read another beam's prefix.
    Row with source token A prefers A first (0.5 vs 0.4) but only the path B C EOS is likely overall.
    """

    A, B, C = NUM_SPECIALS, NUM_SPECIALS + 1, NUM_SPECIALS + 2

    def __init__(self, vocab: int = NUM_SPECIALS + 3) -> None:
        self.vocab = vocab

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        return src

    def init_cache(self, memory: torch.Tensor) -> History:
        return History(torch.empty(memory.shape[0], 0, dtype=torch.long))

    def next_probs(self, first: int, prefix: tuple[int, ...]) -> dict[int, float]:
        a, b = (self.A, self.B) if first == self.A else (self.B, self.A)  # the second row swaps A and B
        table = {
            (BOS,): {a: 0.5, b: 0.4, EOS: 0.1},
            (BOS, a): {a: 0.3, b: 0.25, self.C: 0.25, EOS: 0.2},
            (BOS, b): {self.C: 0.95, EOS: 0.05},
            (BOS, b, self.C): {EOS: 0.99, a: 0.01},
        }
        return table.get(prefix, {a: 0.4, b: 0.3, EOS: 0.3})

    def decode_step(self, memory: torch.Tensor, token: torch.Tensor, cache: History) -> torch.Tensor:
        cache.tokens = torch.cat([cache.tokens, token.unsqueeze(1)], dim=1)
        logits = torch.full((token.shape[0], self.vocab), -30.0)
        for row, (src, prefix) in enumerate(zip(memory.tolist(), cache.tokens.tolist(), strict=True)):
            for tok, p in self.next_probs(src[0], tuple(prefix)).items():
                logits[row, tok] = torch.tensor(p).log()
        return logits


def test_beam_states_are_reordered_with_their_beams():
    fake = ScriptedDecoder()
    A, B, C = fake.A, fake.B, fake.C
    src = torch.tensor([[A], [B]])
    greedy = greedy_decode(fake, src, max_len=4, use_cache=True)
    assert greedy[0, 0] == A and greedy[1, 0] == B  # greedy commits to the locally best first token
    out, score = beam_search(fake, src, max_len=4, beam_size=2)
    # At step 2 the best hypothesis continues what was beam 1 after step 1: it needs that beam's prefix.
    assert out.tolist() == [[B, C, EOS], [A, C, EOS]]
    torch.testing.assert_close(score, torch.tensor([0.4 * 0.95 * 0.99] * 2).log())


def test_select_beams_takes_each_beams_state_from_its_parent():
    states = torch.arange(2 * 3).view(6, 1).float()  # row b, beam k holds 3b + k
    parents = torch.tensor([[2, 2, 0], [1, 0, 1]])
    assert select_beams([states], parents)[0].flatten().tolist() == [2, 2, 0, 4, 3, 4]


def test_longer_outputs_win_with_a_larger_length_penalty():
    net, src = random_transformer(3), sources(3, batch=16)
    short, _ = beam_search(net, src, max_len=MAX_LEN - 1, beam_size=4, alpha=0.0)
    long, _ = beam_search(net, src, max_len=MAX_LEN - 1, beam_size=4, alpha=2.0)
    lengths = [int((out != PAD).sum()) for out in (short, long)]
    assert lengths[1] > lengths[0]


# Every translation network, with dropout, so that training runs the attention's CPU dropout path.
WITH_DROPOUT = {
    **{
        f"transformer-{positions}": lambda positions=positions: Transformer(
            TransformerConfig(D_MODEL, HEADS, D_FF, dropout=0.1, positions=positions), VOCAB, MAX_LEN
        )
        for positions in POSITION_CHOICES
        if positions != "none"  # refused: the encoder attends both ways (TransformerConfig)
    },
    **{
        f"{cell}-{name}": lambda cls=cls, cell=cell, attention=attention: cls(
            replace(TINY_RNN, cell=cell, dropout=0.1), VOCAB, MAX_LEN, **attention
        )
        for name, cls, attention in [
            ("seq2seq", Seq2Seq, {}),
            ("bahdanau", Seq2SeqAttention, {"attention": AttentionConfig("bahdanau")}),
            ("dot", Seq2SeqAttention, {"attention": AttentionConfig("dot")}),
            ("general", Seq2SeqAttention, {"attention": AttentionConfig("general")}),
            ("general-feeding", Seq2SeqAttention, {"attention": AttentionConfig("general", input_feeding=True)}),
        ]
        for cell in ("gru", "lstm")
    },
}


@pytest.mark.parametrize("name", WITH_DROPOUT)
def test_a_source_row_of_only_padding_gives_finite_logits_gradients_and_attention_maps(name):
    torch.manual_seed(0)
    net = WITH_DROPOUT[name]()
    src = torch.randint(NUM_SPECIALS, VOCAB, (BATCH, SRC_LEN))
    src[0, -2:] = PAD
    src[1] = PAD  # nothing to read
    tgt_in = shift_right(torch.randint(NUM_SPECIALS, VOCAB, (BATCH, TGT_LEN)))
    logits = net.train()(src, tgt_in)
    assert torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    for key, p in net.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), key
    net.eval()
    with torch.no_grad():
        logits = net(src, tgt_in)
        assert torch.isfinite(logits).all()
        others = [0, *range(2, BATCH)]  # the other rows are those of a batch without the empty one
        torch.testing.assert_close(logits[others], net(src[others], tgt_in[others]))
        if hasattr(net, "attention_weights"):
            weights = net.attention_weights(net.encode(src), tgt_in)  # (B, T, S)
            assert torch.isfinite(weights).all() and weights[1].eq(0).all()
        assert torch.isfinite(sequence_log_prob(net, src, greedy_decode(net, src, max_len=MAX_LEN - 1))).all()
