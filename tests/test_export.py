"""`nlparena export`: a data module's splits as the files the file data modules read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nlparena.data import LanguagePair, Pretraining, Sentiment, SentimentPair
from nlparena.data.pretraining import IGNORE_INDEX
from tests.conftest import run_cli

SIZES = {"train_size": 60, "val_size": 8, "test_size": 6}
SIZE_ARGS = [f"--data.{key}={value}" for key, value in SIZES.items()]
SPLITS = ("train", "val", "test")


def rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def built(data_class: type, **settings: object) -> object:
    data = data_class(**{**SIZES, **settings})
    data.setup("fit")
    return data


def test_export_writes_a_translation_split_per_file_with_its_examplesas_text():
    run_cli("export", "--data=LanguagePair", *SIZE_ARGS, "--out=exported")
    data = built(LanguagePair)
    assert sorted(path.name for path in Path("exported").iterdir()) == ["test.tsv", "train.tsv", "val.tsv"]
    for split in SPLITS:
        header, *body = rows(Path("exported", f"{split}.tsv"))
        assert header == ["source", "target"]
        assert len(body) == len(data.splits[split])  # training without the inputs held out, as `setup` leaves it
        src, tgt = data.splits[split].tensors["src"], data.splits[split].tensors["tgt"]
        assert body == [[data.vocab.decode(s), data.vocab.decode(t)] for s, t in zip(src, tgt, strict=True)]
        words = {word for row in body for text in row for word in text.split()}
        assert not words & {"<pad>", "<bos>", "<eos>"}, split


def test_export_writes_classification_labels_by_name():
    run_cli("export", "--data=Sentiment", *SIZE_ARGS, "--out=exported")
    data = built(Sentiment)
    for split in SPLITS:
        header, *body = rows(Path("exported", f"{split}.tsv"))
        assert header == ["text", "label"]
        assert len(body) == len(data.splits[split])
        labels = data.splits[split].tensors["labels"].tolist()
        assert [label for _, label in body] == [data.class_names[i] for i in labels]
        ids = data.splits[split].tensors["ids"]
        first = [text for text, _ in body]
        assert first == [" ".join(data.vocab.tokens[i] for i in row[1 : int((row != 0).sum()) - 1]) for row in ids]


def test_export_writes_both_sentences_of_a_pair_and_its_label_name():
    run_cli("export", "--data=SentimentPair", *SIZE_ARGS, "--out=exported")
    data = built(SentimentPair)
    header, *body = rows(Path("exported", "test.tsv"))
    assert header == ["text", "text_b", "label"]
    tensors = data.splits["test"].tensors
    for (text, text_b, label), ids, segments, gold in zip(
        body, tensors["ids"], tensors["segments"], tensors["labels"].tolist(), strict=True
    ):
        words = [data.vocab.tokens[i] for i in ids[ids != 0].tolist()]
        assert words == ["<cls>", *text.split(), "<sep>", *text_b.split(), "<sep>"]
        assert int(segments.sum()) == len(text_b.split()) + 1  # B and its [SEP] are segment 1
        assert label == data.class_names[gold]


def test_export_writes_pretraining_documents_as_two_lines_and_a_blank_line():
    run_cli("export", "--data=Pretraining", *SIZE_ARGS, "--out=exported")
    data = built(Pretraining)
    assert sorted(path.name for path in Path("exported").iterdir()) == ["test.txt", "train.txt", "val.txt"]
    for split in SPLITS:
        text = Path("exported", f"{split}.txt").read_text()
        documents = [block.split("\n") for block in text.rstrip("\n").split("\n\n")]
        assert len(documents) == len(data.splits[split]) and all(len(doc) == 2 for doc in documents), split
        # each document is the split's row unmasked: segment A, and segment B where B is the document's own
        tensors = data.splits[split].tensors
        unmasked = torch.where(tensors["mlm_labels"] != IGNORE_INDEX, tensors["mlm_labels"], tensors["ids"])
        examples = zip(documents, unmasked, tensors["segments"], tensors["is_next"].tolist(), strict=True)
        for (first, second), row, segments, is_next in examples:
            a, b = row[(segments == 0) & (row != 0)][1:-1], row[segments == 1][:-1]
            assert first == " ".join(data.vocab.tokens[i] for i in a.tolist()), split
            assert not is_next or second == " ".join(data.vocab.tokens[i] for i in b.tolist()), split


def test_export_takes_the_data_section_of_a_fit_config():
    config = yaml.safe_load(Path(__file__).parents[1].joinpath("configs/classification/rnn.yaml").read_text())
    config["data"]["init_args"].update(SIZES)
    Path("fit.yaml").write_text(yaml.safe_dump(config))
    run_cli("export", "-c", "fit.yaml", "--data.test_size=5", "--out=exported")
    data = built(Sentiment, **{**config["data"]["init_args"], "test_size": 5})
    assert data.vocab_size == 6 + 32 * 3 + 2  # the config's lexicon sizes, not the defaults
    for split in SPLITS:
        assert len(rows(Path("exported", f"{split}.tsv"))) == 1 + len(data.splits[split])
    first = data.splits["test"].tensors["ids"][0]
    assert rows(Path("exported", "test.tsv"))[1][0] == data.vocab.decode(first[first != 0][1:-1])


@pytest.mark.parametrize("existing", ["file", "folder"])
def test_export_refuses_an_out_folder_that_is_not_empty_and_leaves_it_as_it_was(capsys, existing):
    Path("exported").mkdir()
    kept = Path("exported/train.tsv") if existing == "file" else Path("exported/runs")
    kept.write_text("mine\n") if existing == "file" else kept.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("export", "--data=Copy", *SIZE_ARGS, "--out=exported")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "nlparena: error: --out exported: is not empty; give a new or empty folder (an export never overwrites files)"
    ]
    assert [path.name for path in Path("exported").iterdir()] == [kept.name]
    assert existing == "folder" or kept.read_text() == "mine\n"


def test_export_writes_into_an_empty_out_folder():
    Path("exported").mkdir()
    run_cli("export", "--data=Copy", *SIZE_ARGS, "--out=exported")
    assert rows(Path("exported/val.tsv"))[0] == ["source", "target"]
