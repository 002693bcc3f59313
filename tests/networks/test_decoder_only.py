import itertools

import pytest
import torch

from nlparena.data.vocab import EOS, NUM_SPECIALS, PAD
from nlparena.errors import ConfigError
from nlparena.networks.decoder_only import DecoderOnly, DecoderOnlyClassifier, DecoderOnlyConfig
from nlparena.networks.decoding import beam_search, greedy_decode, sequence_log_prob
from tests.conftest import BATCH, D_FF, D_MODEL, HEADS, MAX_LEN, SRC_LEN, TGT_LEN, VOCAB

POSITIONS = ["sinusoidal", "learned", "alibi", "rope", "t5", "none"]
VARIANTS = [
    {"positions": positions, "attention": attention, "norm_first": norm_first}
    for positions in POSITIONS
    for attention in ("causal", "prefix")
    for norm_first in (True, False)
    if not (positions == "none" and attention == "prefix")
]


def variant_id(variant: dict) -> str:
    return "-".join(str(value) for value in variant.values())


def network(seed: int = 0, vocab: int = VOCAB, scale: float = 1.0, **settings) -> DecoderOnly:
    """A random tiny decoder-only network, its weights multiplied by `scale` (larger: outputs depend more on the
    input)."""
    torch.manual_seed(seed)
    config = DecoderOnlyConfig(d_model=D_MODEL, n_heads=HEADS, d_ff=D_FF, num_layers=3, dropout=0.0, **settings)
    net = DecoderOnly(config, vocab, MAX_LEN)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net.eval()


def tokens(length: int, batch: int = BATCH) -> torch.Tensor:
    return torch.randint(NUM_SPECIALS, VOCAB, (batch, length))


def padded_sources() -> torch.Tensor:
    src = tokens(SRC_LEN)
    src[0, -3:] = PAD  # a shorter row
    return src


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_logits_have_batch_target_vocab_shape(variant):
    assert network(**variant)(tokens(SRC_LEN), tokens(TGT_LEN)).shape == (BATCH, TGT_LEN, VOCAB)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_target_positions_cannot_see_later_target_tokens(variant):
    net, src, tgt_in = network(**variant), padded_sources(), tokens(TGT_LEN)
    changed = tgt_in.clone()
    changed[:, 3:] = torch.randint(NUM_SPECIALS, VOCAB, (BATCH, TGT_LEN - 3))
    before, after = net(src, tgt_in), net(src, changed)
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


@pytest.mark.parametrize("positions", ["sinusoidal", "alibi", "t5", "rope"])
def test_source_positions_see_later_source_tokens_only_in_prefix_mode(positions):
    src, tgt_in = tokens(SRC_LEN), tokens(TGT_LEN)
    changed = src.clone()
    changed[:, -1] = (src[:, -1] - NUM_SPECIALS + 1) % (VOCAB - NUM_SPECIALS) + NUM_SPECIALS  # the last source token
    for attention, sees_later in (("causal", False), ("prefix", True)):
        net = network(positions=positions, attention=attention)
        before, after = (net.stack(net.encode(s), tgt_in)[:, : SRC_LEN - 1] for s in (src, changed))
        assert torch.allclose(before, after) is not sees_later, attention


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_cached_step_logits_equal_teacher_forced_logits(variant):
    net, src, tgt_in = network(**variant), padded_sources(), tokens(TGT_LEN)
    prompt = net.encode(src)
    forced = net.decode(prompt, tgt_in)  # (B, T, V)
    cache = net.init_cache(prompt)
    stepped = torch.stack([net.decode_step(prompt, tgt_in[:, t], cache) for t in range(TGT_LEN)], dim=1)
    torch.testing.assert_close(stepped, forced, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_padding_changes_nothing(variant):
    net, tgt_in = network(**variant), tokens(TGT_LEN)
    src = tokens(SRC_LEN)
    short = src.clone()
    short[0, -3:] = PAD
    alone = net(short[:1, :-3], tgt_in[:1])  # the short row without any padding
    padded_end = net(short, tgt_in)[:1]
    padded_front = net(torch.cat([short[:1, -3:], short[:1, :-3]], dim=1), tgt_in[:1])
    torch.testing.assert_close(padded_end, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(padded_front, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(net(short, tgt_in)[1:], net(src[1:], tgt_in[1:]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention", ["causal", "prefix"])
def test_beam_search_finds_the_most_likely_output_that_brute_force_enumeration_finds(attention):
    vocab, steps = NUM_SPECIALS + 2, 3  # outputs: EOS, SEP, CLS, MASK and two symbols (PAD, BOS never emitted)
    found = 0
    for seed in range(4):
        net = network(seed, vocab, positions="rope", attention=attention)
        with torch.no_grad():
            net.generator.bias[EOS] += seed  # outputs that end early become likely too
        torch.manual_seed(seed)
        src = torch.randint(NUM_SPECIALS, vocab, (2, 4))
        src[1, -1] = PAD
        emitted = [t for t in range(vocab) if t not in (PAD, 1)]  # BOS is 1
        candidates = torch.tensor(list(itertools.product(emitted, repeat=steps)))  # (N, steps)
        for row in range(2):
            scores = sequence_log_prob(net, src[row : row + 1].expand(len(candidates), -1), candidates)
            best = candidates[scores.argmax()]
            out, score = beam_search(net, src[row : row + 1], max_len=steps, beam_size=len(emitted) ** (steps - 1))
            torch.testing.assert_close(score[0], scores.max())
            end = (best == EOS).nonzero()
            length = int(end[0]) + 1 if len(end) else steps
            assert out[0, :length].tolist() == best[:length].tolist()
            found += int(length < steps)
    assert found  # some most likely outputs end early (EOS), as well as some at the length limit


def test_prefix_alibi_looks_both_ways_across_the_source_heads_and_left_in_every_target_head():
    net = network(positions="alibi", attention="prefix")
    weights: list[torch.Tensor] = []
    net.stack(net.encode(tokens(SRC_LEN)), tokens(TGT_LEN), weights)
    w = weights[0]  # (B, H, L, L), the source in columns 0 .. SRC_LEN - 1
    left_of = torch.ones(w.shape[-1], w.shape[-1]).tril(-1).bool()  # (L, L) keys left of the query
    to_left = (w * left_of).sum(-1)  # (B, H, L)
    looks_right = torch.arange(HEADS) >= (HEADS + 1) // 2  # the second half of the heads, in the source
    assert (to_left[:, looks_right, 1:SRC_LEN] == 0).all() and (to_left[:, ~looks_right, 1:SRC_LEN] > 0).all()
    assert (to_left[:, :, SRC_LEN:] > 0).all()  # the target rows are causal: every head reads what came before


def test_greedy_decoding_with_and_without_cache_gives_the_same_tokens():
    net, src = network(positions="rope", attention="prefix"), padded_sources()
    assert torch.equal(greedy_decode(net, src, MAX_LEN - 1), greedy_decode(net, src, MAX_LEN - 1, use_cache=False))


def test_nope_causal_stack_tells_positions_apart_through_the_mask():
    net = network(positions="none", attention="causal")
    src = tokens(SRC_LEN)
    swapped = src[:, [1, 0, *range(2, SRC_LEN)]]  # the same tokens, the first two in the other order
    assert not torch.allclose(net(src, tokens(TGT_LEN)), net(swapped, tokens(TGT_LEN)))


def test_nope_without_a_causal_source_is_refused():
    with pytest.raises(ConfigError, match=r"model\.decoder\.positions=none with model\.decoder\.attention=prefix"):
        DecoderOnlyConfig(positions="none", attention="prefix")


def test_attention_weights_are_over_the_source_columns_as_given_and_zero_on_padding():
    net, src, tgt_in = network(attention="prefix"), padded_sources(), tokens(TGT_LEN)
    weights = net.attention_weights(net.encode(src), tgt_in)  # (B, T, S)
    assert weights.shape == (BATCH, TGT_LEN, SRC_LEN)
    assert weights[0, :, -3:].eq(0).all() and weights[0, :, :-3].gt(0).all()
    alone = net.attention_weights(net.encode(src[:1, :-3]), tgt_in[:1])
    torch.testing.assert_close(weights[:1, :, :-3], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_the_classifier_reads_each_text_whatever_its_padding(pooling):
    torch.manual_seed(0)
    config = DecoderOnlyConfig(d_model=D_MODEL, n_heads=HEADS, d_ff=D_FF, num_layers=2, dropout=0.0)
    net = DecoderOnlyClassifier(config, VOCAB, MAX_LEN, num_classes=3, pooling=pooling).eval()
    ids = padded_sources()  # row 0 ends with padding
    logits = net(ids)
    torch.testing.assert_close(logits[:1], net(ids[:1, :-3]), atol=1e-5, rtol=1e-4)
    changed = ids.clone()
    changed[1, 0] = (ids[1, 0] - NUM_SPECIALS + 1) % (VOCAB - NUM_SPECIALS) + NUM_SPECIALS
    assert not torch.allclose(net(changed)[1], logits[1])  # the pooled state has read the first token
