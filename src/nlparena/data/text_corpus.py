"""TextCorpus: BERT pre-training (MLM + NSP) on users' own documents.

An example is a sentence A and a sentence B: for half of the examples B is the sentence that follows A in its
document (`is_next` 1), for the others a sentence of another document. Tokens are masked by `mask_tokens`, as in
`Pretraining`; both draws come from (seed, split, example) only, so every epoch, worker and process sees the same
masks (static masking, like the original BERT data).

Shapes: B examples in a batch, W the longest `[CLS] A [SEP] B [SEP]` of the batch.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from nlparena.data.pretraining import IGNORE_INDEX, mask_tokens
from nlparena.data.ragged import RaggedBatches, RaggedColumn, padded
from nlparena.data.text_cache import NpyAppender, load_array
from nlparena.data.text_data import EncodedRows, TextDataModule, text_key
from nlparena.data.text_files import CorpusFile, TextSource
from nlparena.data.text_pair import check_limit
from nlparena.data.text_splits import SPLIT_NAMES
from nlparena.data.text_tokenizer import TextTokenizer
from nlparena.errors import ConfigError

PARTNER_TRIES = 8  # draws of a sentence of another document before one of the same is accepted (one document)
BLOCK = 1 << 20  # sentences read at a time when the examples are listed


def example_generator(seed: int, split: str, example: int) -> torch.Generator:
    """A generator that depends on (seed, split, example) only."""
    digest = hashlib.blake2b(f"{seed}:{split}:{example}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class CorpusBatches(RaggedBatches):
    """MLM + NSP batches `{"ids", "segments", "mlm_labels", "is_next"}` of a split's cached sentences."""

    def __init__(
        self, folder: Path, size: int, tokenizer: TextTokenizer, seed: int, split: str, mask_rate: float
    ) -> None:
        super().__init__({"sentences": RaggedColumn(folder, "sentences")}, size)
        self.examples = load_array(folder / "examples.npy")  # the sentence A of each example
        self.next, self.document = load_array(folder / "next.npy"), load_array(folder / "document.npy")
        self.cls_id, self.sep_id, self.mask_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id
        self.special_ids, self.vocab_size = tokenizer.special_ids, len(tokenizer)
        self.seed, self.split, self.mask_rate = seed, split, mask_rate

    def partner(self, g: torch.Generator, first: int) -> tuple[int, int]:
        """(sentence B, is_next) of the example whose sentence A is `first`."""
        if torch.rand(1, generator=g).item() < 0.5:
            return int(self.next[first]), 1
        for _ in range(PARTNER_TRIES):
            other = int(torch.randint(len(self.next), (1,), generator=g))
            if self.document[other] != self.document[first]:
                break
        return other, 0

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        sentences = self.columns["sentences"]
        rows, labels, segments, is_next = [], [], [], []
        for i in indices:  # a loop over one batch's examples: each has its own draws
            g = example_generator(self.seed, self.split, i)
            first = int(self.examples[i])
            second, follows = self.partner(g, first)
            a, b = sentences.row(first).tolist(), sentences.row(second).tolist()
            ids = torch.tensor([[self.cls_id, *a, self.sep_id, *b, self.sep_id]])  # (1, W)
            masked, mlm_labels = mask_tokens(ids, g, self.vocab_size, self.mask_rate, self.special_ids, self.mask_id)
            rows.append(masked[0])
            labels.append(mlm_labels[0])
            segments.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
            is_next.append(follows)
        return {
            "ids": padded(rows),
            "segments": padded(segments, 0),
            "mlm_labels": padded(labels, IGNORE_INDEX),
            "is_next": torch.tensor(is_next, dtype=torch.long),
        }

    def length_keys(self) -> torch.Tensor:
        """(N,) length of each example's sentence A (its B is drawn per example)."""
        lengths = np.diff(self.columns["sentences"].offsets)
        return torch.from_numpy(np.asarray(lengths[self.examples[: self.size]], dtype=np.int64))


class TextCorpus(TextDataModule):
    """Documents for MLM + NSP: one sentence per line, a blank line between documents. Val and test take whole
    documents (drawn from the training file by seed, or from files of their own).

    Args:
        mask_rate: share of the non-special tokens chosen for MLM.
        max_tokens: the longest `[CLS] A [SEP] B [SEP]`; a sentence of more than (max_tokens - 3) // 2 tokens is
            dropped (and counted), and its neighbours are not paired across it.
        Others as in TextDataModule; the sizes count examples (a sentence and the next one).
    """

    family: ClassVar[str] = "pretraining"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "ids"
    trim: ClassVar[dict[str, str]] = {"ids": "ids", "segments": "ids", "mlm_labels": "ids"}
    columns = ("sentences",)
    per_row: ClassVar[tuple[str, ...]] = ("sentence_keys", "next", "document")
    limit_keys: ClassVar[tuple[str, ...]] = ("max_tokens",)
    row_word: ClassVar[str] = "examples (a sentence followed by another of its document)"

    def __init__(self, mask_rate: float = 0.15, max_tokens: int = 256, **kwargs: Any) -> None:
        if not 0 < mask_rate <= 1:
            raise ConfigError(f"data.mask_rate={mask_rate}: must be in (0, 1]")
        check_limit("max_tokens", max_tokens, 5)
        self.mask_rate, self.max_tokens = mask_rate, max_tokens
        super().__init__(**kwargs)

    def source(self, path: str, what: str) -> TextSource:
        return CorpusFile(Path(path), what)

    def settings(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens}

    @property
    def max_length(self) -> int:
        return self.max_tokens

    def encode(self, split: str, rows: list[tuple[int, tuple[str, ...]]], start: int) -> EncodedRows:
        """Each document's sentences; `next` is the index of the sentence that follows one in its document, or -1
        (its last, or before a dropped one); `document` is the line the document starts at."""
        longest = (self.max_tokens - 3) // 2
        tokens = iter(self.tokenizer.encode_batch([s for _, document in rows for s in document]))
        encoded = EncodedRows({"sentences": []}, {name: [] for name in self.per_row}, Counter())
        for line, document in rows:
            follows = False  # whether the sentence before was kept
            for sentence in document:
                ids = next(tokens)
                if not ids or len(ids) > longest:
                    encoded.dropped["empty" if not ids else "too long"] += 1
                    follows = False
                    continue
                if follows:  # the previous kept sentence is followed by this one
                    encoded.per_row["next"][-1] = start + len(encoded.columns["sentences"])
                encoded.columns["sentences"].append(ids)
                encoded.per_row["sentence_keys"].append(text_key(sentence))
                encoded.per_row["next"].append(-1)
                encoded.per_row["document"].append(line)
                follows = True
        return encoded

    def finish(self, folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """The examples of each split (its sentences followed by another) and their keys, a block at a time."""
        for split in SPLIT_NAMES:
            examples = NpyAppender(folder / split / "examples.npy", np.int64)
            keys = NpyAppender(folder / split / "keys.npy", np.int64)
            following, sentence_keys = (load_array(folder / split / f"{n}.npy") for n in ("next", "sentence_keys"))
            for begin in range(0, len(following), BLOCK):
                firsts = begin + np.flatnonzero(following[begin : begin + BLOCK] >= 0)
                examples.append(firsts)
                keys.append(sentence_keys[firsts])
            examples.close()
            keys.close()
            meta["splits"][split]["rows"] = examples.length
        return meta

    def batches(self, folder: Path, size: int) -> RaggedBatches:
        return CorpusBatches(folder, size, self.tokenizer, self.seed, folder.name, self.mask_rate)
