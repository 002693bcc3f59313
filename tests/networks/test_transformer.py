import copy
from dataclasses import replace
from typing import get_type_hints

import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import NUM_SPECIALS, PAD
from nlparena.errors import ConfigError
from nlparena.networks.decoding import greedy_decode
from nlparena.networks.layers import CrossAttention, shift_right
from nlparena.networks.positions import POSITION_CHOICES, T5Bias
from nlparena.networks.transformer import Transformer, TransformerConfig
from tests.conftest import BATCH, D_FF, D_MODEL, HEADS, MAX_LEN, SRC_LEN, TGT_LEN, VOCAB

VARIANTS = [
    {"norm_first": True, "positions": "sinusoidal", "share_embeddings": True},
    {"norm_first": False, "positions": "learned", "share_embeddings": False},
    {"norm_first": True, "positions": "alibi", "share_embeddings": True},
    {"norm_first": False, "positions": "rope", "share_embeddings": True},
    {"norm_first": True, "positions": "t5", "share_embeddings": False},
]
RELATIVE = ("alibi", "rope", "t5")  # positions inside attention, with no table to run out of


TINY = TransformerConfig(
    d_model=D_MODEL, n_heads=HEADS, d_ff=D_FF, num_encoder_layers=2, num_decoder_layers=3, dropout=0.0
)


def network(**settings) -> Transformer:
    """A tiny Transformer: TINY with `settings` (config keys) changed."""
    torch.manual_seed(0)
    return Transformer(replace(TINY, **settings), VOCAB, MAX_LEN).eval()


def tokens(length: int) -> torch.Tensor:
    return torch.randint(NUM_SPECIALS, VOCAB, (BATCH, length))


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_have_batch_target_vocab_shape(variant):
    assert network(**variant)(tokens(SRC_LEN), tokens(TGT_LEN)).shape == (BATCH, TGT_LEN, VOCAB)


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_cannot_see_future_tokens(variant):
    net, src, tgt_in = network(**variant), tokens(SRC_LEN), tokens(TGT_LEN)
    logits = net(src, tgt_in)
    for t in range(TGT_LEN - 1):
        changed = tgt_in.clone()
        changed[:, t + 1 :] = tokens(TGT_LEN - t - 1)
        torch.testing.assert_close(net(src, changed)[:, : t + 1], logits[:, : t + 1])
        assert not torch.allclose(net(src, changed)[:, t + 1 :], logits[:, t + 1 :])


@pytest.mark.parametrize("variant", VARIANTS)
def test_source_padding_does_not_change_outputs_for_real_tokens(variant):
    net, src, tgt_in = network(**variant), tokens(SRC_LEN), tokens(TGT_LEN)
    padded = F.pad(src, (0, 4), value=PAD)  # same sentences, four PAD columns more
    torch.testing.assert_close(net(padded, tgt_in), net(src, tgt_in))
    memory, memory_padded = net.encode(src), net.encode(padded)
    torch.testing.assert_close(memory_padded.states[:, :SRC_LEN], memory.states)


def varied_network(**variant) -> Transformer:
    """A random network whose greedy output depends on the source (weights scaled up, untied output)."""
    net = network(**{**variant, "share_embeddings": False})
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.mul_(3)
    return net


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_decoding_with_and_without_cache_gives_the_same_tokens(variant):
    net = varied_network(**variant)
    torch.manual_seed(1)
    src = tokens(SRC_LEN)
    src[0, -3:] = PAD  # one padded row
    with_cache = greedy_decode(net, src, max_len=MAX_LEN - 1, use_cache=True)
    without = greedy_decode(net, src, max_len=MAX_LEN - 1, use_cache=False)
    assert len({tuple(row) for row in with_cache.tolist()}) > 1  # a real comparison, not one constant output
    assert torch.equal(with_cache, without)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_step_logits_equal_teacher_forced_logits(variant):
    net, src, tgt = network(**variant), tokens(SRC_LEN), tokens(TGT_LEN)
    src[1, -2:] = PAD
    tgt_in = shift_right(tgt)
    full = net(src, tgt_in)
    memory = net.encode(src)
    cache = net.init_cache(memory)
    steps = torch.stack([net.decode_step(memory, tgt_in[:, t], cache) for t in range(TGT_LEN)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


def test_shared_embeddings_tie_source_target_and_output():
    net = network(share_embeddings=True)
    assert net.src_embed.tokens.weight is net.tgt_embed.tokens.weight is net.generator.weight


def test_source_longer_than_positional_table_is_refused():
    with pytest.raises(ConfigError, match="positional table"):
        network()(tokens(MAX_LEN + 2), tokens(TGT_LEN))


def test_d_model_not_divisible_by_heads_is_refused():
    message = r"model\.transformer\.d_model=18 must be divisible by model\.transformer\.n_heads=4"
    with pytest.raises(ConfigError, match=message):
        TransformerConfig(d_model=18, n_heads=4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cross_attention_weights_sum_to_one_over_real_source_tokens_and_are_zero_on_pad(variant):
    net, src, tgt_in = network(**variant), tokens(SRC_LEN), tokens(TGT_LEN)
    src[1, -3:] = PAD
    weights = net.attention_weights(net.encode(src), tgt_in)
    assert weights.shape == (BATCH, TGT_LEN, SRC_LEN)
    real = (src != PAD).unsqueeze(1).expand_as(weights)
    assert weights[~real].eq(0).all() and weights[real].gt(0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(BATCH, TGT_LEN))


def test_explicit_attention_weights_are_the_ones_sdpa_applies():
    torch.manual_seed(0)
    attn = CrossAttention(D_MODEL, HEADS).eval()
    query, memory = torch.randn(BATCH, TGT_LEN, D_MODEL), torch.randn(BATCH, SRC_LEN, D_MODEL)
    mask = torch.ones(BATCH, SRC_LEN, dtype=torch.bool)
    mask[0, -2:] = False
    k, v = attn.keys_values(memory)
    by_hand = attn.weights(query, k, mask) @ v  # (B, H, T, Dh)
    merged = by_hand.transpose(1, 2).reshape(BATCH, TGT_LEN, D_MODEL)
    torch.testing.assert_close(attn.out_proj(merged), attn(query, k, v, mask))


@pytest.mark.parametrize("positions", RELATIVE)
def test_relative_positions_give_finite_logits_at_twice_max_len(positions):
    net = network(positions=positions)
    src, tgt_in = tokens(2 * MAX_LEN), tokens(2 * MAX_LEN)
    logits = net(src, tgt_in)
    assert logits.shape == (BATCH, 2 * MAX_LEN, VOCAB)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_logits_at_the_first_positions_equal_a_run_on_the_target_prefix(variant):
    # positions inside attention at twice max_len, beyond any positional table; absolute ones up to their table's end
    length = 2 * MAX_LEN if variant["positions"] in RELATIVE else MAX_LEN
    net, src, tgt_in = network(**variant), tokens(SRC_LEN), tokens(length)
    logits = net(src, tgt_in)
    for prefix in (1, TGT_LEN, length - 1):
        torch.testing.assert_close(net(src, tgt_in[:, :prefix]), logits[:, :prefix])


def test_config_lists_every_position_choice_and_only_those():
    positions = get_type_hints(TransformerConfig)["positions"]
    assert positions.__args__ == tuple(POSITION_CHOICES)
    assert {"t5", "none"} <= set(POSITION_CHOICES)


def test_no_positional_encoding_is_refused_for_the_bidirectional_encoder():
    with pytest.raises(ConfigError, match=r"^model\.transformer\.positions=none: the encoder attends both ways"):
        TransformerConfig(positions="none")


@pytest.mark.parametrize("positions", RELATIVE)
def test_each_stack_shares_one_positions_module_across_its_layers(positions):
    net = network(positions=positions)
    encoder = {id(layer.attn.positions) for layer in net.encoder}
    decoder = {id(layer.self_attn.positions) for layer in net.decoder}
    assert len(encoder) == 1 and len(decoder) == 1 and encoder != decoder


def test_t5_has_one_bucket_table_per_stack_as_in_t5():
    net = network(positions="t5")
    tables = [name for name, _ in net.named_parameters() if name.endswith("positions.buckets.weight")]
    assert tables == ["encoder.0.attn.positions.buckets.weight", "decoder.0.self_attn.positions.buckets.weight"]
    assert len({id(m) for m in net.modules() if isinstance(m, T5Bias)}) == 2


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_t5_bias_table_gets_a_gradient_from_every_layer_of_its_stack(stack):
    src, tgt_in = tokens(SRC_LEN), tokens(TGT_LEN)
    for k in range(TINY.num_encoder_layers if stack == "encoder" else TINY.num_decoder_layers):
        net = network(positions="t5").train()
        layers = getattr(net, stack)
        attention = [layer.attn if stack == "encoder" else layer.self_attn for layer in layers]
        table = attention[k].positions.buckets.weight
        frozen = copy.deepcopy(attention[k].positions).requires_grad_(False)  # the same values, no gradient
        for i, attn in enumerate(attention):
            if i != k:
                attn.positions = frozen
        net(src, tgt_in).logsumexp(-1).sum().backward()
        assert table.grad is not None and table.grad.abs().sum() > 0, k  # through layer k alone
