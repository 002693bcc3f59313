import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.networks.rnn_classifier import RNNClassifier
from tests.conftest import BATCH, MAX_LEN, SRC_LEN, VOCAB
from tests.networks.test_rnn import EMBED, HIDDEN, ragged_source

CLASSES = 4
CLASSIFIERS = [
    pytest.param({"cell": "gru", "num_layers": 1}, id="gru"),
    pytest.param({"cell": "lstm", "num_layers": 2}, id="lstm-2-layers"),
]


def rnn_classifier(**kwargs) -> RNNClassifier:
    torch.manual_seed(0)
    return RNNClassifier(VOCAB, MAX_LEN, CLASSES, embed_dim=EMBED, hidden_size=HIDDEN, dropout=0.0, **kwargs).eval()


@pytest.mark.parametrize("variant", CLASSIFIERS)
def test_classifier_logits_have_batch_classes_shape_and_ignore_segments(variant):
    net, ids = rnn_classifier(**variant), ragged_source()
    assert net(ids).shape == (BATCH, CLASSES)
    torch.testing.assert_close(net(ids, torch.randint(0, 2, ids.shape)), net(ids))


@pytest.mark.parametrize("variant", CLASSIFIERS)
def test_classifier_padding_does_not_change_logits(variant):
    net, ids = rnn_classifier(**variant), ragged_source()
    logits = net(ids)
    torch.testing.assert_close(net(F.pad(ids, (0, 4), value=PAD)), logits)  # four PAD columns more
    torch.testing.assert_close(net(ids[2:, :2]), logits[2:])  # the short row alone, without any PAD


@pytest.mark.parametrize("variant", CLASSIFIERS)
def test_classifier_attention_weights_sum_to_one_over_real_tokens_and_are_zero_on_pad(variant):
    net, ids = rnn_classifier(**variant), ragged_source()
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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, r"model\.num_classes=1: must be at least 2"),
        ({"cell": "rnn"}, r"model\.cell='rnn': choose one of \['gru', 'lstm'\]"),
        ({"hidden_size": 0}, r"model\.hidden_size=0: must be at least 1"),
        ({"dropout": 1.0}, r"model\.dropout=1\.0: must be in \[0, 1\)"),
    ],
)
def test_classifier_refuses_bad_settings_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RNNClassifier(VOCAB, MAX_LEN, **{"num_classes": CLASSES, **kwargs})
