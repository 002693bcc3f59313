from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.networks.rnn import RNNConfig
from nlparena.networks.rnn_classifier import RNNClassifier
from tests.conftest import BATCH, MAX_LEN, SRC_LEN, VOCAB
from tests.networks.test_rnn import EMBED, HIDDEN, ragged_source

CLASSES = 4
TINY = RNNConfig(embed_dim=EMBED, hidden_size=HIDDEN, dropout=0.0)  # bidirectional: pooled states 2 * HIDDEN wide
CLASSIFIERS = [
    pytest.param(replace(TINY, cell="gru", num_layers=1), id="gru"),
    pytest.param(replace(TINY, cell="lstm", num_layers=2), id="lstm-2-layers"),
]


def rnn_classifier(config: RNNConfig = TINY) -> RNNClassifier:
    torch.manual_seed(0)
    return RNNClassifier(config, VOCAB, MAX_LEN, CLASSES).eval()


@pytest.mark.parametrize("config", CLASSIFIERS)
def test_classifier_logits_have_batch_classes_shape_and_ignore_segments(config):
    net, ids = rnn_classifier(config), ragged_source()
    assert net(ids).shape == (BATCH, CLASSES)
    torch.testing.assert_close(net(ids, torch.randint(0, 2, ids.shape)), net(ids))


@pytest.mark.parametrize("config", CLASSIFIERS)
def test_classifier_padding_does_not_change_logits(config):
    net, ids = rnn_classifier(config), ragged_source()
    logits = net(ids)
    torch.testing.assert_close(net(F.pad(ids, (0, 4), value=PAD)), logits)  # four PAD columns more
    torch.testing.assert_close(net(ids[2:, :2]), logits[2:])  # the short row alone, without any PAD


@pytest.mark.parametrize("config", CLASSIFIERS)
def test_classifier_attention_weights_sum_to_one_over_real_tokens_and_are_zero_on_pad(config):
    net, ids = rnn_classifier(config), ragged_source()
    weights = net.attention_weights(ids)
    real = ids != PAD
    assert weights.shape == (BATCH, SRC_LEN)
    assert weights[~real].eq(0).all() and weights[real].gt(0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(BATCH))


def test_classifier_reads_the_attention_weighted_sum_of_encoder_states():
    net, ids = rnn_classifier(), ragged_source()
    states, _, _ = net.encoder(ids)  # (B, S, Hd)
    pooled = (net.attention_weights(ids).unsqueeze(-1) * states).sum(1)  # (B, Hd)
    torch.testing.assert_close(net(ids), net.classifier(pooled))
    assert not torch.allclose(pooled, states.sum(1) / (ids != PAD).sum(1, keepdim=True))  # not a plain mean


@pytest.mark.parametrize("config", CLASSIFIERS)
def test_a_unidirectional_classifier_pools_hidden_size_wide_states(config):
    ids = ragged_source()
    assert rnn_classifier(config).attend(ids)[0].shape == (BATCH, 2 * HIDDEN)  # bidirectional: both directions
    net = rnn_classifier(replace(config, bidirectional=False))
    states, _, _ = net.encoder(ids)
    pooled, weights = net.attend(ids)
    assert states.shape == (BATCH, SRC_LEN, HIDDEN) and pooled.shape == (BATCH, HIDDEN)
    torch.testing.assert_close(pooled, (weights.unsqueeze(-1) * states).sum(1))
    logits = net(ids)
    assert logits.shape == (BATCH, CLASSES)
    torch.testing.assert_close(logits, net.classifier(pooled))


@pytest.mark.parametrize(
    ("config", "num_classes", "message"),
    [
        ({}, 1, r"model\.num_classes=1: must be at least 2"),
        ({"cell": "rnn"}, CLASSES, r"model\.rnn\.cell='rnn': choose one of \['gru', 'lstm'\]"),
        ({"hidden_size": 0}, CLASSES, r"model\.rnn\.hidden_size=0: must be at least 1"),
        ({"dropout": 1.0}, CLASSES, r"model\.rnn\.dropout=1\.0: must be in \[0, 1\)"),
    ],
)
def test_classifier_refuses_bad_settings_naming_the_key(config, num_classes, message):
    """`config` changes RNNConfig keys (refused as the config is built); num_classes is the classifier's own."""
    with pytest.raises(ConfigError, match=message):
        RNNClassifier(replace(TINY, **config), VOCAB, MAX_LEN, num_classes)


@pytest.mark.parametrize("config", CLASSIFIERS)
def test_classifier_gives_finite_logits_and_gradients_for_a_row_of_only_padding(config):
    net, ids = rnn_classifier(config).train(), ragged_source()
    ids[1] = PAD
    logits = net(ids)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert torch.equal(net.eval().attention_weights(ids)[1], torch.zeros(ids.shape[1]))
