import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import BOS, PAD
from nlparena.errors import ConfigError
from nlparena.networks import layers
from nlparena.networks.layers import CrossAttention, MultiHeadAttention, SelfAttention, TokenEmbedding, shift_right
from nlparena.networks.positions import (
    ATTENTION_POSITIONS,
    ALiBi,
    LearnedPositions,
    Rotary,
    SinusoidalPositions,
)
from tests.conftest import BATCH, D_MODEL, HEADS, MAX_LEN, SRC_LEN, TGT_LEN, VOCAB


def test_shift_right_puts_bos_first_and_drops_the_last_token():
    tgt = torch.tensor([[7, 8, 9, 2], [6, 2, PAD, PAD]])
    assert shift_right(tgt).tolist() == [[BOS, 7, 8, 9], [BOS, 6, 2, PAD]]


@pytest.mark.parametrize("cls", [SinusoidalPositions, LearnedPositions])
def test_positional_encodings_differ_across_positions(cls):
    table = cls(D_MODEL, MAX_LEN)(MAX_LEN)  # (L, D)
    distances = torch.cdist(table, table)
    off_diagonal = distances[~torch.eye(MAX_LEN, dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3


def test_each_position_gets_its_own_encoding_in_the_embedding():
    # the Lightning demo bug: adding pe[:, T] (one vector) instead of pe[:, :T]
    embed = TokenEmbedding(VOCAB, D_MODEL, MAX_LEN)
    same_token = torch.full((1, SRC_LEN), 7)
    x = embed(same_token)[0]  # (S, D)
    assert not torch.allclose(x[0], x[1])


def test_offset_positions_match_the_full_table():
    pos = SinusoidalPositions(D_MODEL, MAX_LEN)
    torch.testing.assert_close(pos(2, offset=3), pos(5)[3:5])


def test_sequence_beyond_positional_table_is_refused():
    with pytest.raises(ConfigError, match=r"beyond the positional table \(model.max_len=13\)"):
        SinusoidalPositions(D_MODEL, MAX_LEN)(MAX_LEN + 1)


def test_attention_ignores_masked_keys():
    torch.manual_seed(0)
    attn = CrossAttention(D_MODEL, HEADS).eval()
    q, kv = torch.randn(BATCH, TGT_LEN, D_MODEL), torch.randn(BATCH, SRC_LEN, D_MODEL)
    mask = torch.ones(BATCH, SRC_LEN, dtype=torch.bool)
    mask[:, -2:] = False
    changed = kv.clone()
    changed[:, -2:] = torch.randn(BATCH, 2, D_MODEL)
    kv, changed = attn.keys_values(kv), attn.keys_values(changed)
    torch.testing.assert_close(attn(q, *kv, mask), attn(q, *changed, mask))
    assert not torch.allclose(attn(q, *kv), attn(q, *changed))  # without the mask they matter


def test_d_model_not_divisible_by_heads_is_refused():
    # a bare layer has no config key to name: the message names its arguments, without a `model.` prefix
    with pytest.raises(ConfigError, match=r"^d_model=10 must be divisible by n_heads=3$"):
        MultiHeadAttention(10, 3)


def test_alibi_bias_depends_on_the_distance_only_and_grows_with_it():
    alibi = ALiBi(n_heads=4, head_dim=8)
    near = alibi.bias(5, 7, offset=0, causal=False)  # (H, 5, 7): queries at 0..4, keys at 0..6
    shifted = alibi.bias(5, 17, offset=10, causal=False)[:, :, 10:]  # queries at 10..14, keys at 10..16
    torch.testing.assert_close(near, shifted)
    last = alibi.bias(1, 7, offset=6, causal=True)[:, 0]  # (H, 7): the query at 6 over keys 0..6
    assert (last[:, :-1] < last[:, 1:]).all()  # farther keys get a lower score
    assert (alibi.slopes.flatten()[1:] < alibi.slopes.flatten()[:-1]).all()  # one slope per head, geometric
    causal = alibi.bias(3, 3, offset=0, causal=True)
    assert torch.isinf(causal[:, 0, 1:]).all() and torch.isfinite(causal[:, 2]).all()


def test_rope_scores_depend_on_the_offset_between_query_and_key_only():
    torch.manual_seed(0)
    rope = Rotary(n_heads=2, head_dim=8)
    q, k = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 1, 8)

    def score(i: int, j: int) -> torch.Tensor:
        return (rope.rotate(q, offset=i) * rope.rotate(k, offset=j)).sum(-1)

    torch.testing.assert_close(score(3, 1), score(13, 11))
    torch.testing.assert_close(score(0, 5), score(20, 25))
    assert not torch.allclose(score(3, 1), score(3, 2))
    x = torch.randn(1, 2, 4, 8)  # a rotation keeps every vector's norm
    torch.testing.assert_close(rope.rotate(x).norm(dim=-1), x.norm(dim=-1))


def test_rope_computes_cos_and_sin_once_per_dtype_and_rotates_every_position_by_its_angle(monkeypatch):
    torch.manual_seed(0)
    rope = Rotary(n_heads=2, head_dim=8)
    computed, cos = [], torch.Tensor.cos

    def counted_cos(angles: torch.Tensor) -> torch.Tensor:
        computed.append(angles.shape)
        return cos(angles)

    monkeypatch.setattr(torch.Tensor, "cos", counted_cos)
    x = torch.randn(3, 2, 12, 8)  # (B, H, T, Dh)
    steps = torch.cat([rope.rotate(x[:, :, t : t + 1], offset=t) for t in range(12)], dim=2)  # as decoding does
    whole = rope.rotate(x)
    assert len(computed) == 1  # once for every call above, not once per call
    rope.rotate(x.bfloat16())
    assert len(computed) == 2  # once more for another dtype
    monkeypatch.undo()
    angles = torch.arange(12.0)[:, None] * rope.inv_freq[None, :]  # (T, Dh/2)
    pairs = x.unflatten(-1, (4, 2))  # (B, H, T, Dh/2, 2): the pairs of dimensions that rotate together
    expected = torch.stack(
        [
            pairs[..., 0] * angles.cos() - pairs[..., 1] * angles.sin(),
            pairs[..., 0] * angles.sin() + pairs[..., 1] * angles.cos(),
        ],
        dim=-1,
    ).flatten(-2)
    torch.testing.assert_close(whole, expected)
    torch.testing.assert_close(steps, expected)


@pytest.mark.parametrize("positions", ATTENTION_POSITIONS)
def test_causal_self_attention_step_with_the_cache_equals_attention_over_the_whole_sequence(positions):
    # 40 positions: beyond T5's exact buckets, where its bidirectional and one-sided buckets part
    torch.manual_seed(0)
    attn = SelfAttention(D_MODEL, HEADS, positions=positions, causal=True).eval()
    x = torch.randn(BATCH, 40, D_MODEL)
    k, v = attn.keys_values(x)  # (B, H, 40, Dh), each key rotated at its own position
    steps = torch.cat([attn.step(x[:, t : t + 1], k[:, :, : t + 1], v[:, :, : t + 1], offset=t) for t in range(40)], 1)
    torch.testing.assert_close(steps, attn(x))


def test_cpu_dropout_keeps_each_element_with_probability_one_minus_p_and_scales_it():
    torch.manual_seed(0)
    x = torch.ones(1_000_000, requires_grad=True)
    y = layers.dropout(x, 0.1, training=True)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.002)  # 6.7 standard deviations
    assert torch.equal(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, kept * (1 / 0.9))  # the gradient flows through the kept elements only, scaled alike
    assert layers.dropout(x, 0.1, training=False) is x
    half = layers.dropout(torch.ones(100_000, dtype=torch.bfloat16), 0.3, training=True)
    assert half.dtype == torch.bfloat16
    assert (half != 0).float().mean().item() == pytest.approx(0.7, abs=0.01)


ATTENTION_CASES = ["no mask", "key mask", "float bias", "causal", "causal, fewer queries", "a row of no keys"]


def attention_inputs(case: str) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    B, H, T, S, Dh = 2, 3, 5, 7, 4
    T = S if case == "causal" else T
    q, k, v = (torch.randn(B, H, n, Dh, generator=g) for n in (T, S, S))
    mask = None
    if case in ("key mask", "a row of no keys"):
        mask = torch.ones(B, 1, 1, S, dtype=torch.bool)
        mask[0, ..., 4:] = False
        if case == "a row of no keys":  # a source of only padding: SDPA gives 0
            mask[1] = False
    if case == "float bias":
        mask = torch.randn(1, H, T, S, generator=g)
    return q, k, v, mask


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention_with_dropout_is_sdpa_when_nothing_is_dropped(case, monkeypatch):
    q, k, v, mask = attention_inputs(case)
    is_causal = case.startswith("causal")
    monkeypatch.setattr(layers, "dropout", lambda x, p, training: x)
    ours = layers.attention_with_dropout(q, k, v, mask, is_causal, 0.1)
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal), atol=1e-6)


def test_attention_dropout_leaves_the_expected_output_that_of_no_dropout():
    torch.manual_seed(0)
    q, k, v, mask = attention_inputs("key mask")
    draws = 20_000
    many = [t.repeat(draws, 1, 1, 1) for t in (q[:1], k[:1], v[:1], mask[:1])]
    mean = layers.attention_with_dropout(*many, is_causal=False, p=0.3).mean(0)
    expected = F.scaled_dot_product_attention(q[:1], k[:1], v[:1], attn_mask=mask[:1])[0]
    assert torch.allclose(mean, expected, atol=0.03)
    one_draw = layers.attention_with_dropout(q[:1], k[:1], v[:1], mask[:1], False, 0.3)[0]
    assert not torch.allclose(one_draw, expected, atol=0.03)  # each draw drops weights; only their mean is unbiased


@pytest.mark.parametrize("positions", ["alibi", "t5"])
def test_every_query_keeps_a_key_under_a_bias_even_at_the_padding(positions, monkeypatch):
    # ALiBi's right-looking encoder heads leave a padding query at the end only padding to its right; some SDPA
    # kernels answer a row with no key with NaN, which then reaches the real tokens through 0 * NaN
    attn = SelfAttention(D_MODEL, HEADS, positions=positions).eval()
    masks = []
    monkeypatch.setattr(attn, "attend", lambda q, k, v, mask, is_causal: masks.append(mask) or q.new_zeros(1))
    key_mask = torch.ones(BATCH, SRC_LEN, dtype=torch.bool)
    key_mask[0, -3:] = False  # a shorter row, padded at the end
    attn(torch.randn(BATCH, SRC_LEN, D_MODEL), key_mask)
    assert not masks[0].isneginf().all(-1).any()  # no query is left without a key
    real = key_mask[:, None, :, None] & key_mask[:, None, None, :]  # (B, 1, T, S) between real tokens
    unbiased = attn.positions.bias(SRC_LEN, SRC_LEN, 0, False).expand_as(masks[0])
    torch.testing.assert_close(masks[0].masked_select(real), unbiased.masked_select(real))  # unchanged there
