"""TextTokenizer: specials at fixed ids, text given back by decode, the same JSON and fingerprint after a reload."""

import pytest
import torch

from nlparena.data.text_tokenizer import TRAINED_SPECIALS, TextTokenizer
from nlparena.data.vocab import BOS, CLS, EOS, MASK, PAD, SEP, Vocab
from nlparena.errors import ConfigError

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a lazy dog sleeps in the sun, the fox runs.",
    "brown dogs and quick foxes",
] * 4
SENTENCE = "the lazy fox jumps over the brown dog"


def lines(texts):
    """`texts` one at a time, as a file is read (training must not need a list)."""
    yield from texts


@pytest.fixture(params=TextTokenizer.KINDS)
def trained(request) -> TextTokenizer:
    return TextTokenizer.train(lines(TEXTS), request.param, 70)


def test_a_trained_tokenizer_has_the_specials_at_the_vocab_constants(trained):
    assert trained.tokens[:7] == list(TRAINED_SPECIALS)
    roles = (trained.pad_id, trained.bos_id, trained.eos_id, trained.sep_id, trained.cls_id, trained.mask_id)
    assert roles == (PAD, BOS, EOS, SEP, CLS, MASK)
    assert trained.unk_id == 6
    assert len(trained) == len(trained.tokens) <= 70


def test_decode_gives_back_the_words_and_their_spaces(trained):
    ids = trained.encode(SENTENCE)
    assert all(i > 6 for i in ids)  # no specials added
    assert trained.decode(ids) == SENTENCE
    assert trained.encode_batch([SENTENCE, "the dog"]) == [ids, trained.encode("the dog")]


def test_decode_stops_at_eos_and_drops_specials_unless_told_not_to(trained):
    ids = trained.encode("the dog")
    row = torch.tensor([BOS, *ids, EOS, *trained.encode("fox"), PAD, PAD])
    assert trained.decode(row) == "the dog"
    assert "<eos>" in trained.decode(row, strip=False)
    assert trained.strings([*ids, EOS, 9, PAD]) == [trained.tokens[i] for i in ids] + ["<eos>"]


def test_unknown_text_becomes_unk_pieces():
    word = TextTokenizer.train(lines(TEXTS), "word", 70)
    assert word.encode("the zebra") == [word.tokens.index("the"), word.unk_id]


def test_a_reloaded_tokenizer_has_the_same_json_fingerprint_and_ids(trained, tmp_path):
    trained.save(tmp_path / "tokenizer.json")
    for copy in (
        TextTokenizer.from_file(tmp_path / "tokenizer.json", "data.tokenizer.file"),
        TextTokenizer.from_json(trained.to_json()),
    ):
        assert copy.to_json() == trained.to_json()
        assert copy.fingerprint == trained.fingerprint
        assert copy.encode(SENTENCE) == trained.encode(SENTENCE)


def test_different_tokenizers_have_different_fingerprints():
    assert TextTokenizer.train(lines(TEXTS), "bpe", 60).fingerprint != TextTokenizer.train(TEXTS, "bpe", 70).fingerprint


# WordPiece and Unigram training break ties in an order that changes from one training to the next (ids differ, the
# pieces do not): the text data modules train once and keep the tokenizer in their cache.
@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_training_bpe_or_words_on_the_same_texts_gives_the_same_tokenizer(kind):
    assert TextTokenizer.train(lines(TEXTS), kind, 50).fingerprint == TextTokenizer.train(TEXTS, kind, 50).fingerprint


def test_a_vocab_size_below_the_specials_is_refused_naming_the_key():
    for size in (5, 7):
        with pytest.raises(ConfigError, match=rf"^data.tokenizer.vocab_size={size}: must be more than the 7 special"):
            TextTokenizer.train(lines(TEXTS), "bpe", size)


def test_an_unknown_kind_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"^data.tokenizer.kind='sentencepiece': choose one of bpe, wordpiece"):
        TextTokenizer.train(lines(TEXTS), "sentencepiece", 50)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "no such file"), ("", "is not a tokenizer.json"), ('{"version": "1.0"}', "is not a tokenizer.json")],
    ids=["missing", "empty", "other-json"],
)
def test_a_file_that_is_not_a_tokenizer_is_one_line_naming_it(tmp_path, content, expected):
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        TextTokenizer.from_file(path, "data.tokenizer.file")
    message = str(err.value)
    assert message.startswith(f"data.tokenizer.file: {path}") and expected in message and "\n" not in message


def test_a_hugging_face_bert_tokenizer_keeps_its_ids_and_its_roles_are_found_by_name(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, **{f"w{i}": i for i in range(1, 100)}, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    bert = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    bert.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bert.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    bert.save(str(tmp_path / "tokenizer.json"))
    loaded = TextTokenizer.from_file(tmp_path / "tokenizer.json", "data.tokenizer.file")
    assert (loaded.pad_id, loaded.unk_id, loaded.cls_id, loaded.sep_id, loaded.mask_id) == (0, 100, 101, 102, 103)
    assert loaded.bos_id is None and loaded.eos_id is None
    loaded.require("classification", "data.tokenizer.file")
    loaded.require("pretraining", "data.tokenizer.file")
    with pytest.raises(ConfigError, match=r"^data.tokenizer.file: the tokenizer has no bos token \(<bos>/<s>\)"):
        loaded.require("translation", "data.tokenizer.file")


def test_the_synthetic_vocab_says_it_does_not_detokenize():
    vocab = Vocab(["a", "b"])
    assert vocab.detokenizes is False and vocab.to_json() is None
    assert TextTokenizer.detokenizes is True
