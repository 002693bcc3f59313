from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from nlparena.data.vocab import CLS, NUM_SPECIALS, PAD, SEP
from nlparena.errors import ConfigError
from nlparena.networks.bert import Bert, BertConfig, BertForClassification, BertForPretraining
from tests.conftest import BATCH, D_FF, D_MODEL, HEADS, MAX_LEN, SRC_LEN, VOCAB

CLASSES = 4  # differs from every size in conftest
TINY = BertConfig(d_model=D_MODEL, n_heads=HEADS, d_ff=D_FF, num_layers=2, dropout=0.0)
POOLINGS = ("pooler", "cls", "mean")


def bert(seed: int = 0) -> Bert:
    torch.manual_seed(seed)
    return Bert(TINY, VOCAB, MAX_LEN).eval()


def pretraining(seed: int = 0) -> BertForPretraining:
    torch.manual_seed(seed)
    return BertForPretraining(TINY, VOCAB, MAX_LEN).eval()


def classifier(pooling: str = "pooler", seed: int = 0) -> BertForClassification:
    torch.manual_seed(seed)
    return BertForClassification(TINY, VOCAB, MAX_LEN, CLASSES, pooling).eval()


def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Rows "[CLS] a a a [SEP] b [SEP]", the third "[CLS] a [SEP] b [SEP]" and two PAD, and their segment ids."""
    torch.manual_seed(1)
    ids = torch.randint(NUM_SPECIALS, VOCAB, (BATCH, SRC_LEN))
    ids[:, 0], ids[:, 4], ids[:, 6] = CLS, SEP, SEP
    segments = torch.tensor([0, 0, 0, 0, 0, 1, 1]).repeat(BATCH, 1)
    ids[2] = torch.tensor([CLS, 7, SEP, 8, SEP, PAD, PAD])
    segments[2] = torch.tensor([0, 0, 0, 1, 1, 0, 0])
    return ids, segments


def test_states_and_heads_have_the_expected_shapes():
    ids, segments = pair()
    states = bert()(ids, segments)
    assert states.shape == (BATCH, SRC_LEN, D_MODEL) and bert().pool(states).shape == (BATCH, D_MODEL)
    mlm, nsp = pretraining()(ids, segments)
    assert mlm.shape == (BATCH, SRC_LEN, VOCAB) and nsp.shape == (BATCH, 2)
    for pooling in POOLINGS:
        assert classifier(pooling)(ids, segments).shape == (BATCH, CLASSES)


def test_pooler_output_equals_tanh_of_dense_on_cls_state_computed_by_hand():
    net, (ids, segments) = bert(), pair()
    states = net(ids, segments)
    W, b = net.pooler.weight, net.pooler.bias  # (D, D), (D,)
    h_cls = states[:, 0]  # (B, D)
    torch.testing.assert_close(net.pool(states), torch.tanh(h_cls @ W.T + b))
    other_tokens = states.clone()
    other_tokens[:, 1:] = torch.randn_like(states[:, 1:])
    torch.testing.assert_close(net.pool(other_tokens), net.pool(states))


def test_pad_positions_do_not_change_other_tokens_outputs():
    net, (ids, segments) = bert(), pair()
    states = net(ids, segments)
    padded = net(F.pad(ids, (0, 4), value=PAD), F.pad(segments, (0, 4)))  # four PAD columns more
    real = ids != PAD
    torch.testing.assert_close(padded[:, :SRC_LEN][real], states[real])
    # the padded row alone, without any PAD, gives the states it has inside the padded batch
    torch.testing.assert_close(net(ids[2:, :5], segments[2:, :5]), states[2:, :5])


def test_segment_ids_change_the_output():
    net, (ids, segments) = bert(), pair()
    assert not torch.allclose(net(ids, segments), net(ids, torch.zeros_like(segments)))
    torch.testing.assert_close(net(ids), net(ids, torch.zeros_like(segments)))  # no segments: all sentence A


def test_positions_differ():
    net = bert()
    states = net(torch.full((1, SRC_LEN), 7))[0]  # one token everywhere: only its position tells states apart
    for i in range(SRC_LEN):
        for j in range(i + 1, SRC_LEN):
            assert not torch.allclose(states[i], states[j], atol=1e-4), (i, j)


def test_states_leave_a_post_norm_layer_normalised():
    net, (ids, segments) = bert(), pair()
    assert not any(layer.norm_first for layer in net.layers)
    states = net(ids, segments)  # the last LayerNorm has its default weight 1, bias 0 at initialisation
    torch.testing.assert_close(states.mean(-1), torch.zeros(BATCH, SRC_LEN), atol=1e-5, rtol=0)
    torch.testing.assert_close(states.var(-1, unbiased=False), torch.ones(BATCH, SRC_LEN), atol=1e-3, rtol=0)


def test_sequence_longer_than_positional_table_is_refused():
    with pytest.raises(ConfigError, match=r"positional table \(model\.max_len=13\)"):
        bert()(torch.full((1, MAX_LEN + 1), 7))


def test_mlm_decoder_weight_is_the_token_embedding():
    net = pretraining()
    tokens = net.bert.embeddings.tokens.weight
    assert net.mlm.decoder.weight is tokens and net.mlm.decoder.bias.shape == (VOCAB,)
    assert sum(p is tokens for p in net.parameters()) == 1  # one Parameter for the optimizer, trained by both ends
    before = net.mlm.decoder.weight[7].clone()
    with torch.no_grad():
        tokens[7] += 1.0
    torch.testing.assert_close(net.mlm.decoder.weight[7], before + 1.0)


def test_pad_embedding_row_starts_at_zero_even_with_the_tied_mlm_decoder():
    net = pretraining()
    assert net.bert.embeddings.tokens.weight[PAD].eq(0).all()
    assert net.mlm.decoder.bias.eq(0).all() and net.nsp.bias.eq(0).all()
    assert 0.01 < net.bert.embeddings.segments.weight.std() < 0.03  # normal(0, 0.02), not PyTorch's N(0, 1)


def test_mlm_logits_at_masked_positions_equal_those_of_the_full_forward():
    net, (ids, segments) = pretraining(), pair()
    masked = torch.zeros_like(ids, dtype=torch.bool)
    masked[0, 2], masked[1, 1], masked[1, 5], masked[2, 3] = True, True, True, True
    mlm, nsp = net(ids, segments)
    states = net.bert(ids, segments)
    assert net.mlm_logits_at(states, masked).shape == (4, VOCAB)
    torch.testing.assert_close(net.mlm_logits_at(states, masked), mlm[masked])
    torch.testing.assert_close(net.nsp_logits(states), nsp)


def test_pretraining_encoder_weights_load_into_the_classifier_key_for_key():
    pre, clf, (ids, segments) = pretraining(seed=0), classifier("pooler", seed=1), pair()
    assert not torch.allclose(clf.bert(ids, segments), pre.bert(ids, segments))
    result = clf.bert.load_state_dict(pre.bert.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert clf.bert.state_dict().keys() == pre.bert.state_dict().keys()
    states = clf.bert(ids, segments)
    torch.testing.assert_close(states, pre.bert(ids, segments))
    torch.testing.assert_close(clf.bert.pool(states), pre.bert.pool(states))  # the NSP-trained pooler came along


def test_cls_pooling_reads_the_first_final_state():
    net, (ids, segments) = classifier("cls"), pair()
    states = net.bert(ids, segments)
    torch.testing.assert_close(net.summary(ids, states), states[:, 0])
    torch.testing.assert_close(net(ids, segments), net.classifier(states[:, 0]))


def test_mean_pooling_averages_real_tokens_only():
    net, (ids, segments) = classifier("mean"), pair()
    states = net.bert(ids, segments)
    by_hand = torch.stack([states[b, ids[b] != PAD].mean(0) for b in range(BATCH)])
    torch.testing.assert_close(net.summary(ids, states), by_hand)
    padded = F.pad(ids, (0, 4), value=PAD)
    torch.testing.assert_close(net(padded, F.pad(segments, (0, 4))), net(ids, segments))


def test_pooler_pooling_differs_from_cls():
    net, (ids, segments) = classifier("pooler"), pair()
    states = net.bert(ids, segments)
    torch.testing.assert_close(net.summary(ids, states), net.bert.pool(states))
    assert not torch.allclose(net.summary(ids, states), states[:, 0])


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_trainable_parameter_gets_a_gradient_so_ddp_finds_none_unused(pooling):
    ids, segments = pair()
    nets = {"classifier": classifier(pooling), "pretraining": pretraining()}
    nets["classifier"](ids, segments).sum().backward()
    sum(logits.sum() for logits in nets["pretraining"](ids, segments)).backward()
    for net in nets.values():
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert nets["classifier"].bert.pooler.weight.requires_grad == (pooling == "pooler")


@pytest.mark.parametrize(
    ("config", "network", "message"),
    [
        ({"d_model": 0}, {}, r"model\.bert\.d_model=0: must be at least 1"),
        ({"d_ff": 0}, {}, r"model\.bert\.d_ff=0: must be at least 1"),
        ({"num_layers": 0}, {}, r"model\.bert\.num_layers=0: must be at least 1"),
        ({"num_segments": 0}, {}, r"model\.bert\.num_segments=0: must be at least 1"),
        ({"dropout": 1.0}, {}, r"model\.bert\.dropout=1\.0: must be in \[0, 1\)"),
        (
            {"d_model": 18, "n_heads": 4},
            {},
            r"model\.bert\.d_model=18 must be divisible by model\.bert\.n_heads=4",
        ),
        ({}, {"pooling": "max"}, r"model\.pooling='max': choose one of \['pooler', 'cls', 'mean'\]"),
        ({}, {"num_classes": 1}, r"model\.num_classes=1: must be at least 2"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(config, network, message):
    """`config` changes BertConfig keys (refused as the config is built), `network` the classifier's own arguments."""
    arguments = {"num_classes": CLASSES, "pooling": "pooler", **network}
    with pytest.raises(ConfigError, match=message):
        BertForClassification(replace(TINY, **config), VOCAB, MAX_LEN, **arguments)
