"""Our BERT with Hugging Face BERT weights (`--model.pretrained hf:PATH`): the same outputs, loaded by the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers  # the hf extra, part of dev

from nlparena.cli import NlpArenaCLI
from nlparena.data import Sentiment, TextTokenizer
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


# BERT's specials where a vocab.txt puts them, none at the ids nlparena's trained tokenizers give them (0..6 but PAD)
BERT_VOCAB = ["[PAD]", "the", "a", "movie", "[UNK]", "film", "plot", "was", "[CLS]", "is", "very", "not", "[SEP]"]
BERT_VOCAB += ["[MASK]", "good", "great", "fun", "bad", "dull", "awful"]
REVIEWS = [("the movie was very good", "pos"), ("a plot not fun", "neg"), ("the film is great", "pos")]
REVIEWS += [("a movie was dull", "neg"), ("the plot is fun zebra", "pos"), ("a film was very awful", "neg")]


def hugging_face_folder(folder: Path) -> transformers.PreTrainedTokenizerBase:
    """A tiny random Hugging Face BERT and its own fast tokenizer (tokenizer.json, BERT's specials) in `folder`."""
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    tokenizer = transformers.BertTokenizerFast(str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    hugging_face_bert(len(tokenizer)).save_pretrained(folder)
    return tokenizer


def test_a_hugging_face_bert_fine_tunes_on_a_csv_with_its_own_tokenizer(tmp_path):
    tokenizer = hugging_face_folder(tmp_path / "hf")
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id) == (8, 12, 4)
    Path("reviews.csv").write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in REVIEWS * 8))
    args = [
        *TINY_CLASSIFIERS["BertClassifier"],
        f"--model.pretrained=hf:{tmp_path / 'hf'}",
        "--data=TextClassification",
        "--data.train_file=reviews.csv",
        "--data.val_fraction=0.2",
        "--data.test_fraction=0.2",
        "--data.max_tokens=12",  # within the folder's 40 positions
        "--data.batch_size=8",
        "--data.cache_dir=cache",
        *QUIET,
        "--trainer.max_steps=3",
        "--trainer.log_every_n_steps=1",
    ]
    cli = NlpArenaCLI(["fit", *args])
    batch = next(iter(cli.datamodule.train_dataloader()))
    ids, lengths = batch["ids"], (batch["ids"] != PAD).sum(1)
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    assert (ids[torch.arange(len(ids)), lengths - 1] == tokenizer.sep_token_id).all()
    assert ((ids == tokenizer.sep_token_id).sum(1) == 1).all() and (batch["segments"] == 0).all()
    unknown = cli.datamodule.splits["train"].batch(list(range(len(cli.datamodule.splits["train"]))))["ids"]
    assert (unknown == tokenizer.unk_token_id).any()  # "zebra" is read as the folder's [UNK]

    assert cli.trainer.global_step == 3 and torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    (checkpoint,) = Path("logs").glob("TextClassification/BertClassifier/version_0/checkpoints/last.ckpt")
    saved = torch.load(checkpoint, weights_only=True)
    folders = TextTokenizer.from_file(tmp_path / "hf/tokenizer.json", "the folder's").fingerprint
    assert TextTokenizer.from_json(saved["tokenizer"]).fingerprint == folders
    assert not list(Path("cache").glob("tokenizers/*/tokenizer.json"))  # none trained on reviews.csv
    # the encoder started from the folder's weights: 3 AdamW steps of lr 1e-3 move each weight by about 3e-3 at most
    folder = state_from_hugging_face(transformers.BertModel.from_pretrained(tmp_path / "hf").state_dict())
    for key, value in saved["state_dict"].items():
        if key.startswith("net.bert."):
            theirs = folder[key.removeprefix("net.")][: value.shape[0]]
            torch.testing.assert_close(value, theirs, atol=4e-3, rtol=0, msg=key)
    assert not torch.equal(saved["state_dict"]["net.bert.pooler.weight"], folder["bert.pooler.weight"])  # trained
