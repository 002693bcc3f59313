import dataclasses
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import NUM_SPECIALS, PAD
from nlparena.errors import ConfigError
from nlparena.networks.decoding import greedy_decode
from nlparena.networks.layers import shift_right
from nlparena.networks.rnn import AttentionConfig, RNNEncoderDecoder, Seq2Seq, Seq2SeqAttention, Seq2SeqConfig
from tests.conftest import BATCH, MAX_LEN, SRC_LEN, TGT_LEN, VOCAB

EMBED, HIDDEN = 10, 6  # bidirectional decoder states are 12 wide, unidirectional 6: neither matches another size
TINY = Seq2SeqConfig(embed_dim=EMBED, hidden_size=HIDDEN, dropout=0.0)
GRU = replace(TINY, cell="gru", bidirectional=True, num_layers=1)
LSTM = replace(TINY, cell="lstm", bidirectional=False, num_layers=2)
NETWORK = ("cls", "config", "attention")  # what each case of SEQ2SEQ, ATTENTION and VARIANTS gives `network`
SEQ2SEQ = [pytest.param(Seq2Seq, GRU, None, id="seq2seq-gru"), pytest.param(Seq2Seq, LSTM, None, id="seq2seq-lstm")]
ATTENTION = [
    pytest.param(Seq2SeqAttention, config, AttentionConfig(kind), id=f"{kind}-{config.cell}")
    for kind in ("bahdanau", "dot", "general")
    for config in (GRU, LSTM)
] + [pytest.param(Seq2SeqAttention, LSTM, AttentionConfig("general", input_feeding=True), id="general-feeding")]
VARIANTS = SEQ2SEQ + ATTENTION


def network(
    cls: type[RNNEncoderDecoder], config: Seq2SeqConfig = TINY, attention: AttentionConfig | None = None
) -> RNNEncoderDecoder:
    """A tiny Seq2Seq or Seq2SeqAttention; `attention` only for the latter (None: its default AttentionConfig)."""
    torch.manual_seed(0)
    extra = {} if attention is None else {"attention": attention}
    return cls(config, VOCAB, MAX_LEN, **extra).eval()


def tokens(length: int) -> torch.Tensor:
    return torch.randint(NUM_SPECIALS, VOCAB, (BATCH, length))


def ragged_source() -> torch.Tensor:
    """Rows of lengths SRC_LEN, 4 and 2, PAD after the shorter ones."""
    src = tokens(SRC_LEN)
    src[1, 4:] = PAD
    src[2, 2:] = PAD
    return src


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_logits_have_batch_target_vocab_shape(cls, config, attention):
    assert network(cls, config, attention)(tokens(SRC_LEN), tokens(TGT_LEN)).shape == (BATCH, TGT_LEN, VOCAB)


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_padding_does_not_change_outputs_for_real_tokens(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), ragged_source(), tokens(TGT_LEN)
    padded = F.pad(src, (0, 4), value=PAD)  # same sentences, four PAD columns more
    memory, memory_padded = net.encode(src), net.encode(padded)
    real = src != PAD
    torch.testing.assert_close(memory_padded.states[:, :SRC_LEN][real], memory.states[real])
    assert memory.states[~real].eq(0).all() and memory_padded.states[:, SRC_LEN:].eq(0).all()
    for name in ("hidden", "cell", "context"):
        torch.testing.assert_close(getattr(memory_padded, name), getattr(memory, name))
    torch.testing.assert_close(net(padded, tgt_in), net(src, tgt_in))
    # the short row alone, without any PAD, decodes as it does inside the padded batch
    torch.testing.assert_close(net(src[2:, :2], tgt_in[2:]), net(padded, tgt_in)[2:])


@pytest.mark.parametrize(NETWORK, ATTENTION)
def test_attention_weights_sum_to_one_over_real_source_tokens_and_are_zero_on_pad(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), ragged_source(), tokens(TGT_LEN)
    weights = net.attention_weights(net.encode(src), tgt_in)
    assert weights.shape == (BATCH, TGT_LEN, SRC_LEN)
    real = (src != PAD).unsqueeze(1).expand_as(weights)
    assert weights[~real].eq(0).all() and weights[real].gt(0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(BATCH, TGT_LEN))


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_decoder_cannot_see_future_tokens(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), tokens(SRC_LEN), tokens(TGT_LEN)
    logits = net(src, tgt_in)
    for t in range(TGT_LEN - 1):
        changed = tgt_in.clone()
        changed[:, t + 1 :] = (tgt_in[:, t + 1 :] - NUM_SPECIALS + 1) % (VOCAB - NUM_SPECIALS) + NUM_SPECIALS
        torch.testing.assert_close(net(src, changed)[:, : t + 1], logits[:, : t + 1])
        assert not torch.allclose(net(src, changed)[:, t + 1 :], logits[:, t + 1 :])


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_step_by_step_decoding_equals_teacher_forced_decoding(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), ragged_source(), shift_right(tokens(TGT_LEN))
    memory = net.encode(src)
    cache = net.init_cache(memory)
    steps = torch.stack([net.decode_step(memory, tgt_in[:, t], cache) for t in range(TGT_LEN)], dim=1)
    torch.testing.assert_close(steps, net.decode(memory, tgt_in), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(NETWORK, ATTENTION)
def test_bahdanau_attends_before_reading_the_token_and_luong_after(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), tokens(SRC_LEN), tokens(TGT_LEN)
    memory = net.encode(src)
    weights = net.attention_weights(memory, tgt_in)
    changed = tgt_in.clone()
    changed[:, 0] = (tgt_in[:, 0] - NUM_SPECIALS + 1) % (VOCAB - NUM_SPECIALS) + NUM_SPECIALS
    weights_changed = net.attention_weights(memory, changed)
    # Bahdanau's query is the state before token t, Luong's the state after it; both see token 0 from step 1 on.
    assert torch.allclose(weights_changed[:, 0], weights[:, 0]) == (attention.kind == "bahdanau")
    assert not torch.allclose(weights_changed[:, 1:], weights[:, 1:])


@pytest.mark.parametrize(NETWORK, ATTENTION)
def test_only_bahdanau_and_input_feeding_pass_attention_into_the_rnn_state(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), tokens(SRC_LEN), tokens(TGT_LEN)
    memory = net.encode(src)
    other = dataclasses.replace(memory, states=torch.randn_like(memory.states))
    cache, other_cache = net.init_cache(memory), net.init_cache(other)
    for t in range(2):  # input feeding reads step 0's attention at step 1
        net.decode_step(memory, tgt_in[:, t], cache)
        net.decode_step(other, tgt_in[:, t], other_cache)
    reads_attention = attention.kind == "bahdanau" or attention.input_feeding
    assert torch.allclose(other_cache.hidden, cache.hidden) != reads_attention


def reorder(tree, order: torch.Tensor):
    """Every tensor in a memory or cache dataclass reordered along dim 0, as beam search does."""
    return dataclasses.replace(
        tree, **{f.name: t if (t := getattr(tree, f.name)) is None else t[order] for f in dataclasses.fields(tree)}
    )


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_memory_and_cache_reordered_along_dim_0_follow_their_rows(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), ragged_source(), tokens(2)
    order = torch.tensor([2, 0, 1])
    memory = net.encode(src)
    cache = net.init_cache(memory)
    net.decode_step(memory, tgt_in[:, 0], cache)
    memory, cache = reorder(memory, order), reorder(cache, order)
    expected = net.decode(net.encode(src[order]), tgt_in[order])[:, 1]
    torch.testing.assert_close(net.decode_step(memory, tgt_in[order, 1], cache), expected)


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_seq2seq_sees_the_source_only_through_the_final_context(cls, config, attention):
    net, src, tgt_in = network(cls, config, attention), tokens(SRC_LEN), tokens(TGT_LEN)
    memory = net.encode(src)
    logits = net.decode(memory, tgt_in)
    other_states = net.decode(dataclasses.replace(memory, states=torch.randn_like(memory.states)), tgt_in)
    other_context = net.decode(dataclasses.replace(memory, context=torch.randn_like(memory.context)), tgt_in)
    if cls is Seq2Seq:
        torch.testing.assert_close(other_states, logits)
        assert not torch.allclose(other_context, logits)
    else:
        assert not torch.allclose(other_states, logits)
        torch.testing.assert_close(other_context, logits)


@pytest.mark.parametrize(NETWORK, VARIANTS)
def test_greedy_decode_runs_on_rnn_networks(cls, config, attention):
    net = network(cls, config, attention)
    with torch.no_grad():  # larger weights, so that the untrained output depends on the source
        for p in net.parameters():
            p.mul_(4)
    torch.manual_seed(1)
    src = torch.cat([ragged_source() for _ in range(4)])
    with_cache = greedy_decode(net, src, max_len=MAX_LEN - 1, use_cache=True)
    without = greedy_decode(net, src, max_len=MAX_LEN - 1, use_cache=False)
    assert with_cache.shape[0] == 4 * BATCH and with_cache.shape[1] <= MAX_LEN - 1
    assert len({tuple(row) for row in with_cache.tolist()}) > 1  # a real comparison, not one constant output
    assert torch.equal(with_cache, without)


@pytest.mark.parametrize("share", [True, False])
def test_shared_embeddings_tie_source_and_target_and_keep_pad_zero(share):
    net = network(Seq2SeqAttention, replace(TINY, share_embeddings=share))
    assert (net.encoder.embedding.weight is net.tgt_embed.weight) == share
    assert net.encoder.embedding.weight[PAD].eq(0).all() and net.tgt_embed.weight[PAD].eq(0).all()


@pytest.mark.parametrize(
    ("rnn", "attention", "message"),
    [
        ({}, {"kind": "foo"}, r"model\.attention\.kind='foo': choose one of \['bahdanau', 'dot', 'general'\]"),
        ({"cell": "rnn"}, {}, r"model\.rnn\.cell='rnn': choose one of \['gru', 'lstm'\]"),
        ({"hidden_size": 0}, {}, r"model\.rnn\.hidden_size=0: must be at least 1"),
        ({"embed_dim": 0}, {}, r"model\.rnn\.embed_dim=0: must be at least 1"),
        ({"num_layers": 0}, {}, r"model\.rnn\.num_layers=0: must be at least 1"),
        ({"dropout": 1.0}, {}, r"model\.rnn\.dropout=1\.0: must be in \[0, 1\)"),
        (
            {},
            {"kind": "bahdanau", "input_feeding": True},
            r"model\.attention\.input_feeding=true: Luong's input feeding needs attention\.kind 'dot' or 'general'",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_key(rnn, attention, message):
    """`rnn` changes Seq2SeqConfig keys, `attention` AttentionConfig keys; each config refuses as it is built."""
    with pytest.raises(ConfigError, match=message):
        Seq2SeqAttention(replace(TINY, **rnn), VOCAB, MAX_LEN, attention=AttentionConfig(**attention))


def test_seq2seq_refuses_bad_settings_too():
    with pytest.raises(ConfigError, match=r"model\.rnn\.dropout=-0\.1: must be in \[0, 1\)"):
        Seq2Seq(replace(TINY, dropout=-0.1), VOCAB, MAX_LEN)
