"""TextPair: translation between the source and target texts of users' own files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from nlparena.data.ragged import PairBatches, RaggedBatches, RaggedColumn
from nlparena.data.text_data import EncodedRows, TextDataModule, text_key
from nlparena.data.text_files import AlignedFiles, TableFile, TextSource
from nlparena.errors import ConfigError


def check_limit(key: str, value: int, lowest: int = 1) -> None:
    if value < lowest:
        raise ConfigError(f"data.{key}={value}: must be at least {lowest}")


class TextPair(TextDataModule):
    """Source -> target pairs from a table's two columns, or from two line-aligned plain text files; batches
    `{"src", "tgt"}` as the synthetic translation tasks give them (the target ends with EOS).

    Args:
        source_column, target_column: the columns of the pair in the train, val and test files.
        source_file, target_file: two plain text files, line i of one translated by line i of the other, instead
            of data.train_file (val and test rows are then drawn from them, or come from data.val_file / test_file).
        max_source_tokens, max_target_tokens: longer rows are dropped (and counted); rows with an empty source too.
        Others as in TextDataModule.
    """

    family: ClassVar[str] = "translation"  # which models train on it (their `family` must match)
    input_name: ClassVar[str] = "src"
    trim: ClassVar[dict[str, str]] = {"src": "src", "tgt": "tgt"}
    columns = ("src", "tgt")
    limit_keys: ClassVar[tuple[str, ...]] = ("max_source_tokens", "max_target_tokens")

    def __init__(
        self,
        source_column: str = "source",
        target_column: str = "target",
        source_file: str | None = None,
        target_file: str | None = None,
        max_source_tokens: int = 256,
        max_target_tokens: int = 256,
        **kwargs: Any,
    ) -> None:
        check_limit("max_source_tokens", max_source_tokens)
        check_limit("max_target_tokens", max_target_tokens)
        self.text_columns = (source_column, target_column)
        self.aligned = (source_file, target_file)
        self.max_source_tokens, self.max_target_tokens = max_source_tokens, max_target_tokens
        super().__init__(**kwargs)

    def source(self, path: str, what: str) -> TextSource:
        return TableFile(Path(path), self.text_columns, what)

    def training_source(self, train_file: str | None) -> TextSource:
        source_file, target_file = self.aligned
        if source_file is None and target_file is None:
            return super().training_source(train_file)
        if source_file is None or target_file is None:
            given = "source_file" if target_file is None else "target_file"
            raise ConfigError(f"data.{given}: give data.source_file and data.target_file together")
        if train_file is not None:
            raise ConfigError(f"data.train_file={train_file}: give it or data.source_file + target_file, not both")
        what = f"data.source_file={source_file}, data.target_file={target_file}"
        return AlignedFiles((Path(source_file), Path(target_file)), what)

    def settings(self) -> dict[str, Any]:
        return {"columns": self.text_columns, "limits": [self.max_source_tokens, self.max_target_tokens]}

    @property
    def max_length(self) -> int:
        """Longest source or target (+ EOS) any split can hold (the model's positional table size)."""
        return max(self.max_source_tokens, self.max_target_tokens + 1)

    def encode(self, split: str, rows: list[tuple[int, tuple[str, ...]]], start: int) -> EncodedRows:
        sources = self.tokenizer.encode_batch([values[0] for _, values in rows])
        targets = self.tokenizer.encode_batch([values[1] for _, values in rows])
        encoded = EncodedRows({"src": [], "tgt": []}, {"keys": []}, Counter())
        for (_, values), src, tgt in zip(rows, sources, targets, strict=True):
            if not src:
                encoded.dropped["empty"] += 1
            elif len(src) > self.max_source_tokens or len(tgt) > self.max_target_tokens:
                encoded.dropped["too long"] += 1
            else:
                encoded.columns["src"].append(src)
                encoded.columns["tgt"].append(tgt)
                encoded.per_row["keys"].append(text_key(values[0]))
        return encoded

    def batches(self, folder: Path, size: int) -> RaggedBatches:
        return PairBatches({name: RaggedColumn(folder, name) for name in self.columns}, size)
