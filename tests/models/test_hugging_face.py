"""Our BERT with Hugging Face BERT weights (`--model.pretrained hf:PATH`): the same outputs, loaded by the CLI."""

from __future__ import annotations

import pytest
import torch
import transformers  # the hf extra, part of dev

from nlparena.data import Sentiment
from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.models import BertClassifier
from nlparena.networks.bert import BertConfig, BertForPretraining, state_from_hugging_face
from tests.conftest import D_FF, D_MODEL, HEADS, QUIET, run_cli
from tests.models.test_classification import TINY_CLASSIFIERS, TINY_SPLITS

LAYERS, MAX_LEN = 2, 40


def hugging_face_bert(vocab_size: int, d_model: int = D_MODEL, heads: bool = True):
    """A tiny random Hugging Face BERT of our test sizes, without dropout, BERT's LayerNorm eps (1e-12)."""
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=d_model,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=D_FF,
        max_position_embeddings=MAX_LEN,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=PAD,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(config) if heads else transformers.BertModel(config)
    with torch.no_grad():  # LayerNorms start at 1 / 0 and biases at 0: move them, so that a swap would show
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                torch.nn.init.normal_(p, mean=1.0 if name.endswith("LayerNorm.weight") else 0.0, std=0.1)
    return model.eval()


def ids_with_padding(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(PAD + 1, vocab_size, (3, 12))
    ids[1, 8:] = PAD
    segments = torch.zeros_like(ids)
    segments[:, 6:] = 1
    return ids, segments


@pytest.mark.parametrize("saved", ["BertForPreTraining", "BertModel"])
def test_our_bert_with_hugging_face_weights_gives_its_outputs(saved):
    vocab = 50
    hf = hugging_face_bert(vocab, heads=saved == "BertForPreTraining")
    ours = BertForPretraining(BertConfig(D_MODEL, HEADS, D_FF, dropout=0.0, num_layers=LAYERS), vocab, MAX_LEN).eval()
    state = state_from_hugging_face(hf.state_dict())
    if saved == "BertModel":  # a model without pre-training heads gives the encoder and pooler only
        assert not any(key.startswith(("mlm.", "nsp.")) for key in state)
    missing, unexpected = ours.load_state_dict(state, strict=saved == "BertForPreTraining")
    assert not unexpected and all(key.startswith(("mlm.", "nsp.")) for key in missing)

    ids, segments = ids_with_padding(vocab)
    mask = (ids != PAD).long()
    with torch.no_grad():
        states = ours.bert(ids, segments)
        if saved == "BertForPreTraining":
            theirs = hf(ids, attention_mask=mask, token_type_ids=segments, output_hidden_states=True)
            sequence, pooled = theirs.hidden_states[-1], hf.bert.pooler(theirs.hidden_states[-1])
            torch.testing.assert_close(ours.mlm(states), theirs.prediction_logits, atol=1e-5, rtol=0)
            torch.testing.assert_close(ours.nsp_logits(states), theirs.seq_relationship_logits, atol=1e-5, rtol=0)
        else:
            theirs = hf(ids, attention_mask=mask, token_type_ids=segments)
            sequence, pooled = theirs.last_hidden_state, theirs.pooler_output
    torch.testing.assert_close(states, sequence, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.bert.pool(states), pooled, atol=1e-5, rtol=0)


def test_bert_classifier_starts_from_a_hugging_face_folder(tmp_path):
    data = Sentiment()
    hugging_face_bert(data.vocab_size).save_pretrained(tmp_path / "hf")
    config = BertConfig(D_MODEL, HEADS, D_FF, num_layers=LAYERS)
    model = BertClassifier(
        bert=config, pretrained=f"hf:{tmp_path / 'hf'}", vocab_size=data.vocab_size, max_len=30, num_classes=3
    )
    before = {k: v.clone() for k, v in model.net.bert.state_dict().items()}
    missing, _ = model.load_pretrained_encoder(f"hf:{tmp_path / 'hf'}")
    assert not missing
    expected = state_from_hugging_face(transformers.BertModel.from_pretrained(tmp_path / "hf").state_dict())
    for key, value in model.net.bert.state_dict().items():
        want = expected[f"bert.{key}"][: value.shape[0]] if "positions" in key else expected[f"bert.{key}"]
        assert torch.equal(value, want), key
        assert not torch.equal(value, before[key]), key  # every tensor was replaced


def test_fit_reads_a_hugging_face_folder_through_the_cli(tmp_path):
    hugging_face_bert(Sentiment().vocab_size).save_pretrained(tmp_path / "hf")
    run_cli(
        "fit",
        *TINY_CLASSIFIERS["BertClassifier"],
        "--data=Sentiment",
        *TINY_SPLITS,
        *QUIET,
        f"--model.pretrained=hf:{tmp_path / 'hf'}",
        "--trainer.fast_dev_run=1",
    )


def test_a_hugging_face_folder_of_other_sizes_is_refused_naming_the_key(tmp_path):
    vocab = Sentiment().vocab_size
    hugging_face_bert(vocab, d_model=2 * D_MODEL).save_pretrained(tmp_path / "hf")
    config = BertConfig(D_MODEL, HEADS, D_FF, num_layers=LAYERS)
    expected = rf"its hidden_size is {2 * D_MODEL}, model.bert.d_model is {D_MODEL}; set --model.bert.d_model="
    with pytest.raises(ConfigError, match=expected):
        BertClassifier(bert=config, pretrained=f"hf:{tmp_path / 'hf'}", vocab_size=vocab, max_len=30, num_classes=3)
