"""`nlparena export --data LanguagePair --out DIR`: a data module's splits written as the files that the file data
modules read, so that the same examples can be trained from text.

Translation: `train.tsv`, `val.tsv`, `test.tsv` with the columns `source<TAB>target` (tokens space-separated, no
special tokens). Classification: `text<TAB>label` or `text<TAB>text_b<TAB>label`, labels by class name.
Pre-training: `train.txt`, `val.txt`, `test.txt`, each document's two sentences on a line each and a blank line
between documents.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info

from nlparena.cli.checks import check_writable_folder
from nlparena.cli.parser import ConfigFile, NlpArenaParser, subclasses
from nlparena.data import Pretraining, SplitDataModule, TextDataModule
from nlparena.data.pretraining import IGNORE_INDEX, documents, next_sentence_partners
from nlparena.data.sentiment import bert_inputs
from nlparena.data.tasks import split_generator
from nlparena.errors import ConfigError

SPLITS = ("train", "val", "test")
FAMILIES = ("translation", "classification", "pretraining")


class ExportParser(NlpArenaParser):
    """The `data` keys of `nlparena fit`; a config file's other sections (trainer:, model:, ...) are left out."""

    def sections_read(self, content: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in content.items() if key == "data"}

    def parse_string(self, content: str, *args: Any, **kwargs: Any) -> Namespace:
        loaded = yaml.safe_load(content)  # a file's content was checked by `parse_path`: a mapping, unique keys
        if isinstance(loaded, dict):
            content = yaml.safe_dump(self.sections_read(loaded))
        return super().parse_string(content, *args, **kwargs)


def export_parser() -> ExportParser:
    parser = ExportParser(
        prog="nlparena export",
        description="Write a data module's train, val and test splits as files (the format the file data modules "
        "read). The data keys are those of `nlparena fit`; a fit config's data: section is used.",
    )
    parser.add_argument("-c", "--config", action=ConfigFile, help="a config file (of `nlparena fit`): its data:")
    parser.add_lightning_class_args(LightningDataModule, "data", subclass_mode=True, required=True)
    parser.add_argument("--out", type=str, required=True, help="folder to write; must not exist or be empty")
    return parser


def check_out_folder(out: Path) -> None:
    """`--out` must be a new or empty folder that can be written: an export never overwrites files."""
    key = f"--out {out}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{key}: is a file, not a folder; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{key}: is not empty; give a new or empty folder (an export never overwrites files)")
    check_writable_folder(out, key)


def text_of(vocab: Any, ids: torch.Tensor) -> str:
    """The data's text of a row of ids (specials dropped, stops at EOS)."""
    return vocab.decode(ids)


def translation_rows(data: LightningDataModule, split: str) -> Iterator[list[str]]:
    tensors = data.splits[split].tensors
    for src, tgt in zip(tensors["src"], tensors["tgt"], strict=True):
        yield [text_of(data.vocab, src), text_of(data.vocab, tgt)]


def is_pair_data(data: LightningDataModule) -> bool:
    """Whether the classification inputs are sentence pairs (`[CLS] A [SEP] B [SEP]`: segment 1 is B's)."""
    return any(bool((data.splits[split].tensors["segments"] == 1).any()) for split in SPLITS)


def classification_rows(data: LightningDataModule, split: str, pair: bool) -> Iterator[list[str]]:
    """`[text, (text_b,) label name]`: the sentences of `[CLS] A [SEP] (B [SEP])` split by their segment ids."""
    tensors, names = data.splits[split].tensors, data.class_names
    for ids, segments, label in zip(tensors["ids"], tensors["segments"], tensors["labels"].tolist(), strict=True):
        real = ids != data.pad_id
        first = ids[real & (segments == 0)][1:-1]  # without [CLS] and the first [SEP]
        texts = [text_of(data.vocab, first)]
        if pair:
            texts.append(text_of(data.vocab, ids[real & (segments == 1)][:-1]))  # without the last [SEP]
        yield [*texts, names[label]]


def pretraining_documents(data: Pretraining, split: str) -> Iterator[tuple[str, str]]:
    """Each document of the split as it was drawn (its own second sentence, before next-sentence pairing and
    masking): drawn again from (seed, split) as `Pretraining.generate` draws them, with the training documents whose
    input is a held-out one left out as `setup` leaves them out."""
    g, n = split_generator(data.seed, split), data.sizes[split]
    first, second, _ = documents(data.lexicon, g, n, *data.lengths[split])
    if split == "train":
        partner, _ = next_sentence_partners(g, n)
        ids = bert_inputs(first, second[partner])[0]  # the unmasked inputs that `setup` compares
        keys = data.input_keys({"ids": ids, "mlm_labels": torch.full_like(ids, IGNORE_INDEX)})
        seen = torch.cat([data.input_keys(data.splits[held_out].tensors) for held_out in ("val", "test")])
        fresh = ~torch.isin(keys, seen)
        first, second = first[fresh], second[fresh]
    for a, b in zip(first, second, strict=True):
        yield text_of(data.vocab, a), text_of(data.vocab, b)


def write_split(data: LightningDataModule, split: str, out: Path) -> Path:
    """One split's file in `out`; returns its path."""
    family = getattr(data, "family", None)
    if family == "pretraining":
        path = out / f"{split}.txt"
        path.write_text("".join(f"{a}\n{b}\n\n" for a, b in pretraining_documents(data, split)))
        return path
    if family == "translation":
        header, rows = ["source", "target"], translation_rows(data, split)
    else:
        pair = is_pair_data(data)
        header, rows = ["text", *(["text_b"] if pair else []), "label"], classification_rows(data, split, pair)
    path = out / f"{split}.tsv"
    with path.open("w") as file:
        file.writelines("\t".join(row) + "\n" for row in [header, *rows])
    return path


def check_exportable(class_path: str) -> None:
    """`--data` must be a synthetic task's data module (one of users' text files is its files already), checked
    before it is built."""
    data_class = subclasses(LightningDataModule).get(class_path)
    name = class_path.rsplit(".", 1)[-1]
    if data_class is not None and issubclass(data_class, TextDataModule):
        raise ConfigError(f"--data {name}: reads text files already; export a synthetic task's data")
    family = getattr(data_class, "family", None)
    if data_class is None or not issubclass(data_class, SplitDataModule) or family not in FAMILIES:
        raise ConfigError(f"--data {name}: not a data module of nlparena's synthetic tasks; nothing to export")


def export(args: list[str]) -> list[Path]:
    """`nlparena export`: build the data module of `--data ...` (as `fit` would), set it up and write its splits to
    `--out`; returns the files written."""
    NlpArenaParser.check_command_line(args)
    parser = export_parser()
    config = parser.parse_args(args)
    out = Path(config.out)
    check_out_folder(out)
    check_exportable(config.data.class_path)
    data = parser.instantiate(config).data
    name = type(data).__name__
    data.setup("fit")
    out.mkdir(parents=True, exist_ok=True)
    written = [write_split(data, split, out) for split in SPLITS]
    rank_zero_info(f"{name}: wrote {', '.join(str(path) for path in written)}")
    return written
