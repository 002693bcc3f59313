import pytest
import torch

from nlparena.errors import ConfigError
from nlparena.networks.positions import (
    ABSOLUTE_POSITIONS,
    ATTENTION_POSITIONS,
    POSITION_CHOICES,
    ALiBi,
    T5Bias,
    check_order,
    key_distances,
    t5_buckets,
)

BIASES = {"alibi": ALiBi, "t5": T5Bias}


@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("name", BIASES)
def test_attention_bias_depends_on_the_offset_between_query_and_key_only(name, causal):
    torch.manual_seed(0)
    positions = BIASES[name](n_heads=4, head_dim=8)
    length = 300  # beyond T5's max_distance (128), so that its log-spaced and last buckets are reached
    whole = positions.bias(length, length, offset=0, causal=causal)  # (H, T, S)
    for shift in (1, 7, 150):
        # bias(i, j) == bias(i + k, j + k)
        torch.testing.assert_close(whole[:, shift:, shift:], whole[:, : length - shift, : length - shift])
    for offset in (0, 5, 200):  # the decoding cache: one query at `offset` over keys 0..offset (or beyond)
        step = positions.bias(1, offset + 3, offset=offset, causal=causal)  # (H, 1, offset + 3)
        torch.testing.assert_close(step[:, 0], whole[:, offset, : offset + 3])
        block = positions.bias(4, offset + 6, offset=offset, causal=causal)  # queries offset..offset + 3
        torch.testing.assert_close(block, whole[:, offset : offset + 4, : offset + 6])
    if causal:
        assert torch.isneginf(whole.triu(1)[:, torch.ones(length, length).triu(1).bool()]).all()
        assert torch.isfinite(whole.tril()[:, torch.ones(length, length).tril().bool()]).all()
    elif name == "t5":
        assert torch.isfinite(whole).all()
    else:  # ALiBi: each head sees one whole side, the query's own key included
        assert (torch.isfinite(whole.tril()).all(-1).all(-1) ^ torch.isfinite(whole.triu()).all(-1).all(-1)).all()


@pytest.mark.parametrize("n_heads", [1, 2, 3, 4, 8])
def test_bidirectional_alibi_biases_a_key_at_distance_d_to_the_left_differently_from_one_to_the_right(n_heads):
    alibi = ALiBi(n_heads=n_heads, head_dim=8)
    for d in (1, 2, 5):
        bias = alibi.bias(1, 2 * d + 1, offset=d, causal=False)[:, 0]  # (H, S): the query at d, keys 0 .. 2d
        assert (bias[:, 0] != bias[:, 2 * d]).all(), d  # every head tells left from right
        seen = bias.isfinite()  # (H, S): one whole side and the query itself
        left, right = bias[:, : d + 1], bias[:, d:]
        assert (seen[:, : d + 1].all(1) ^ seen[:, d:].all(1)).all()
        assert ((left[:, 1:] > left[:, :-1]) | ~seen[:, 1 : d + 1]).all()  # farther left: lower
        assert ((right[:, 1:] < right[:, :-1]) | ~seen[:, d + 1 :]).all()  # farther right: lower


@pytest.mark.parametrize("n_heads", [1, 2, 3, 4, 8])
def test_bidirectional_alibi_halves_look_one_way_each_with_the_papers_slopes_for_half_the_heads(n_heads):
    alibi = ALiBi(n_heads=n_heads, head_dim=8)
    bias = alibi.bias(7, 7, offset=0, causal=False)  # (H, T, S)
    left = (n_heads + 1) // 2
    for head in range(n_heads):
        looks_left, count, h = (True, left, head + 1) if head < left else (False, n_heads - left, head - left + 1)
        slope = 2.0 ** (-8.0 * h / count)  # the paper's h-th slope for `count` heads
        distance = key_distances(7, 7, offset=0, device=torch.device("cpu")).double()  # i - j
        expected = (-slope * distance.abs()).masked_fill(distance < 0 if looks_left else distance > 0, float("-inf"))
        torch.testing.assert_close(bias[head].double(), expected)


@pytest.mark.parametrize("n_heads", [1, 3, 4, 8])
def test_causal_alibi_is_the_papers_bias(n_heads):
    alibi = ALiBi(n_heads=n_heads, head_dim=8)
    slopes = torch.tensor([2.0 ** (-8.0 * h / n_heads) for h in range(1, n_heads + 1)]).view(n_heads, 1, 1)
    distance = key_distances(6, 9, offset=3, device=torch.device("cpu"))  # queries 3..8 over keys 0..8
    expected = (-slopes * distance).masked_fill(distance < 0, float("-inf"))
    torch.testing.assert_close(alibi.bias(6, 9, offset=3, causal=True), expected)


@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidirectional", "causal"])
def test_t5_buckets_are_those_of_hugging_face_t5(bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention  # the hf extra, part of dev

    distance = torch.arange(-400, 401)  # i - j
    theirs = T5Attention._relative_position_bucket(-distance, bidirectional, num_buckets=32, max_distance=128)
    assert torch.equal(t5_buckets(distance, bidirectional, num_buckets=32, max_distance=128), theirs)


def test_t5_bidirectional_buckets_differ_for_keys_left_and_right_and_causal_ones_are_one_sided():
    distance = torch.arange(1, 400)  # keys 1..399 left of the query
    left, right = t5_buckets(distance, True, 32, 128), t5_buckets(-distance, True, 32, 128)
    assert (left < 16).all() and (right >= 16).all()  # half the buckets per side
    assert left[:7].tolist() == list(range(1, 8)) and right[:7].tolist() == list(range(17, 24))  # exact when near
    assert left[-1] == 15 and right[-1] == 31  # beyond max_distance all share the last bucket of their side
    causal = t5_buckets(torch.arange(0, 400), False, 32, 128)  # every key at or left of the query
    assert causal.unique().tolist() == list(range(32))  # all 32 buckets on one side
    assert causal[:16].tolist() == list(range(16)) and (causal[1:] >= causal[:-1]).all()


def test_t5_bias_reads_each_heads_value_for_the_bucket():
    torch.manual_seed(0)
    t5 = T5Bias(n_heads=3, head_dim=4)
    bias = t5.bias(2, 5, offset=3, causal=False)  # (H, 2, 5): queries 3, 4 over keys 0..4
    assert bias.shape == (3, 2, 5)
    torch.testing.assert_close(bias[:, 0, 4], t5.buckets.weight[16 + 1])  # key one right of query 3
    torch.testing.assert_close(bias[:, 1, 0], t5.buckets.weight[4])  # key four left of query 4
    assert t5.bias(2, 5, offset=3, causal=True)[:, 0, 4].isneginf().all()


def test_every_position_choice_is_built_by_the_embeddings_or_inside_attention():
    assert {"t5", "none"} <= set(POSITION_CHOICES)
    assert sorted([*ABSOLUTE_POSITIONS, *ATTENTION_POSITIONS]) == sorted(POSITION_CHOICES)


def test_no_positions_are_refused_only_where_attention_is_bidirectional():
    check_order("model.decoder_only.positions", "none", bidirectional=False)  # a causal mask tells positions apart
    check_order("model.encoder.positions", "alibi", bidirectional=True)
    with pytest.raises(ConfigError, match=r"^model\.encoder\.positions=none: the stack attends both ways, so"):
        check_order("model.encoder.positions", "none", bidirectional=True)
