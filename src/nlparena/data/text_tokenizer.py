"""A Hugging Face `tokenizers` tokenizer with the interface of the synthetic `Vocab`, trained on users' text or read
from a `tokenizer.json`; it travels inside checkpoints as its JSON (`to_json`).

A tokenizer nlparena trains has the specials `<pad> <bos> <eos> <sep> <cls> <mask> <unk>` at ids 0..6, so the
constants of `data/vocab.py` hold. One read from a file keeps its own ids; its roles are found by name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from nlparena.data.vocab import SPECIALS
from nlparena.errors import ConfigError, one_line

TRAINED_SPECIALS = (*SPECIALS, "<unk>")  # ids 0..6 of every tokenizer trained here
# token names of each role, in order of preference (ours, BERT's, RoBERTa's)
ROLE_NAMES = {
    "pad": ("<pad>", "[PAD]"),
    "bos": ("<bos>", "<s>"),
    "eos": ("<eos>", "</s>"),
    "sep": ("<sep>", "[SEP]", "</s>"),
    "cls": ("<cls>", "[CLS]", "<s>"),
    "mask": ("<mask>", "[MASK]"),
    "unk": ("<unk>", "[UNK]"),
}
# what each data family needs of a tokenizer: role -> the id it must have (None: any id)
FAMILY_NEEDS = {
    "translation": {"pad": 0, "bos": 1, "eos": 2},  # the networks use the constants PAD, BOS, EOS
    "classification": {"pad": 0, "cls": None, "sep": None},
    "pretraining": {"pad": 0, "cls": None, "sep": None, "mask": None},
}


@dataclass(frozen=True)
class TokenizerConfig:
    """The tokenizer of a text data module (config keys `data.tokenizer.*`)."""

    file: str | None = None  # a tokenizer.json to read instead of training one
    kind: str = "bpe"  # bpe | wordpiece | unigram | word, when training
    vocab_size: int = 8000  # when training; must leave room beyond the 7 special tokens
    sample_rows: int = 1_000_000  # training reads at most this many rows of the training split (bounded memory)


def _untrained(kind: str, vocab_size: int) -> tuple[Tokenizer, trainers.Trainer]:
    """An empty tokenizer of `kind` with a pre-tokenizer and decoder that give the words back, and its trainer."""
    specials = list(TRAINED_SPECIALS)
    common = {"vocab_size": vocab_size, "special_tokens": specials, "show_progress": False}
    if kind == "bpe":
        tokenizer, trainer = Tokenizer(models.BPE(unk_token="<unk>")), trainers.BpeTrainer(**common)
    elif kind == "unigram":
        tokenizer, trainer = Tokenizer(models.Unigram()), trainers.UnigramTrainer(unk_token="<unk>", **common)
    elif kind == "wordpiece":
        tokenizer, trainer = Tokenizer(models.WordPiece(unk_token="<unk>")), trainers.WordPieceTrainer(**common)
        tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
        return tokenizer, trainer
    else:  # word: whole words split at whitespace; decoding joins them with spaces
        tokenizer, trainer = Tokenizer(models.WordLevel(unk_token="<unk>")), trainers.WordLevelTrainer(**common)
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return tokenizer, trainer
    # Metaspace marks each word's start with "▁", so that decoding puts the spaces back
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    return tokenizer, trainer


def _canonical(tokenizer: Tokenizer) -> Tokenizer:
    """`tokenizer` once through its JSON: floats (Unigram scores) are then written as they are read back, so the JSON,
    and the fingerprint, of a tokenizer and of its reloaded copy are the same."""
    return Tokenizer.from_str(tokenizer.to_str())


class TextTokenizer:
    """Vocab-like wrapper of a `tokenizers.Tokenizer`: ids <-> token pieces, and detokenized text."""

    KINDS = ("bpe", "wordpiece", "unigram", "word")
    detokenizes = True

    def __init__(self, tokenizer: Tokenizer, source: str | None = None) -> None:
        tokenizer.no_truncation()  # a tokenizer.json may cut or pad to a length of its own
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.source = source  # the file it was read from, named in refusals
        self.tokens = [tokenizer.id_to_token(i) or "" for i in range(tokenizer.get_vocab_size(with_added_tokens=True))]
        index = tokenizer.get_vocab(with_added_tokens=True)
        roles = {role: next((index[n] for n in names if n in index), None) for role, names in ROLE_NAMES.items()}
        self.pad_id, self.bos_id, self.eos_id = roles["pad"], roles["bos"], roles["eos"]
        self.sep_id, self.cls_id, self.mask_id, self.unk_id = roles["sep"], roles["cls"], roles["mask"], roles["unk"]
        self.special_ids = sorted(tokenizer.get_added_tokens_decoder())
        self.fingerprint = hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def train(cls, texts: Iterable[str], kind: str, vocab_size: int) -> TextTokenizer:
        """A tokenizer of `kind` trained on `texts`, streamed (never held as a list); specials at ids 0..6."""
        if kind not in cls.KINDS:
            raise ConfigError(f"data.tokenizer.kind={kind!r}: choose one of {', '.join(cls.KINDS)}")
        if vocab_size <= len(TRAINED_SPECIALS):
            raise ConfigError(
                f"data.tokenizer.vocab_size={vocab_size}: must be more than the {len(TRAINED_SPECIALS)} special "
                f"tokens ({' '.join(TRAINED_SPECIALS)})"
            )
        tokenizer, trainer = _untrained(kind, vocab_size)
        tokenizer.train_from_iterator(iter(texts), trainer)
        return cls(_canonical(tokenizer))

    @classmethod
    def from_file(cls, path: str | Path, what: str) -> TextTokenizer:
        """The tokenizer of a tokenizer.json; a ConfigError `{what}: ...` when `path` is missing or not one."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{what}: {path} is a folder, not a tokenizer.json")
        if not path.is_file():
            raise ConfigError(f"{what}: {path}: no such file")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises its own (Rust) exception types, or an OSError
            raise ConfigError(f"{what}: {path} is not a tokenizer.json ({one_line(str(err), 120)})") from None
        return cls(_canonical(tokenizer), source=str(path))

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        return cls(_canonical(Tokenizer.from_str(text)))

    def to_json(self) -> str:
        """What checkpoints keep (`checkpoint["tokenizer"]`)."""
        return self.tokenizer.to_str()

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json."""
        self.tokenizer.save(str(path))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, no specials added; text the tokenizer does not know becomes unk pieces."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _ids(self, ids: Iterable[int] | torch.Tensor) -> list[int]:
        return ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]

    def decode(self, ids: Iterable[int] | torch.Tensor, strip: bool = True) -> str:
        """Detokenized text of `ids`; with `strip`, stops at EOS and drops the special tokens."""
        ids = self._ids(ids)
        if strip and self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=strip)

    def strings(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """Token pieces of ids up to and including the first EOS, without PAD (labels for figures)."""
        out = []
        for i in self._ids(ids):
            if i != self.pad_id:
                out.append(self.tokens[i])
            if i == self.eos_id:
                break
        return out

    def require(self, family: str, what: str) -> None:
        """ConfigError naming `what` and the missing token unless this tokenizer has what `family` data needs."""
        for role, wanted in FAMILY_NEEDS[family].items():
            found, names = getattr(self, f"{role}_id"), "/".join(ROLE_NAMES[role])
            if found is None:
                raise ConfigError(f"{what}: the tokenizer has no {role} token ({names}), which {family} data needs")
            if wanted is not None and found != wanted:
                raise ConfigError(
                    f"{what}: the tokenizer's {role} token ({names}) has id {found}; {family} data needs it at id "
                    f"{wanted}"
                )
