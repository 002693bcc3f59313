"""The data modules of users' own text files: splits, the token cache, batches, and a fit through the CLI."""

import itertools
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nlparena.data import (
    TextClassification,
    TextCorpus,
    TextPair,
    TextTokenizer,
    TokenizerConfig,
    text_cache,
    text_data,
    text_files,
)
from nlparena.data.pretraining import IGNORE_INDEX
from nlparena.data.splits import ShardedBatches
from nlparena.data.text_cache import cache_root
from nlparena.data.vocab import EOS, PAD
from nlparena.errors import ConfigError
from tests.conftest import QUIET, TINY_MODEL, run_cli
from tests.models.test_classification import TINY_BERT, TINY_CLASSIFIERS

WORDS = ["the", "a", "dog", "cat", "runs", "sleeps", "big", "small", "red", "blue", "house", "tree"]
WORD_TOKENIZER = TokenizerConfig(kind="word", vocab_size=40)  # one token per word: lengths are word counts
HELD_OUT = {"val_fraction": 0.2, "test_fraction": 0.2}


def sentence(i: int, length: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(length))


def write_pairs(path: Path, rows: int = 40, longest: int = 6) -> Path:
    lines = ["source\ttarget"]
    lines += [f"{sentence(i, 2 + i % (longest - 1))}\t{sentence(i + 1, 1 + i % 4)}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_labelled(path: Path, rows: int = 40) -> Path:
    records = [
        {"text": sentence(i, 2 + i % 4), "second": sentence(i + 3, 1 + i % 3), "label": ("no", "yes", "maybe")[i % 3]}
        for i in range(rows)
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def write_corpus(path: Path, documents: int = 16) -> Path:
    text = "\n\n".join("\n".join(sentence(d * 5 + s, 2 + s) for s in range(2 + d % 3)) for d in range(documents))
    path.write_text(text + "\n")
    return path


def pairs(tmp_path: Path, **kwargs) -> TextPair:
    settings = {"train_file": str(write_pairs(tmp_path / "pairs.tsv")), **HELD_OUT, "batch_size": 4}
    return TextPair(**{**settings, "tokenizer": WORD_TOKENIZER, "cache_dir": str(tmp_path / "cache"), **kwargs})


def rows(dm, split: str) -> list[tuple[int, ...]]:
    """Every example of a split, one batch of all of them, without padding."""
    batch = dm.splits[split][list(range(len(dm.splits[split])))]
    key = "src" if "src" in batch else "ids"
    return [tuple(t for t in row if t != PAD) for row in batch[key].tolist()]


def test_pair_batches_give_back_the_texts_padded_to_the_longest_row_and_targets_end_with_eos(tmp_path):
    dm = pairs(tmp_path)
    dm.setup()
    texts = {line.split("\t")[0]: line.split("\t")[1] for line in (tmp_path / "pairs.tsv").read_text().splitlines()[1:]}
    for batch in dm.train_dataloader():
        for name in ("src", "tgt"):
            assert (batch[name] != PAD).sum(1).max() == batch[name].shape[1]  # no column of padding only
        for src, tgt in zip(batch["src"], batch["tgt"], strict=True):
            assert texts[dm.vocab.decode(src)] == dm.vocab.decode(tgt)
            assert tgt[(tgt != PAD).sum() - 1] == EOS
    assert dm.vocab_size == len(dm.vocab) and dm.pad_id == PAD and dm.max_length == 257
    assert sum(len(dm.splits[split]) for split in ("train", "val", "test")) == 40


def test_the_same_seed_splits_the_same_way_another_seed_otherwise(tmp_path):
    first, again, other = pairs(tmp_path, seed=1), pairs(tmp_path, seed=1), pairs(tmp_path, seed=2)
    for dm in (first, again, other):
        dm.setup()
    assert all(rows(first, split) == rows(again, split) for split in ("train", "val", "test"))
    assert rows(first, "val") != rows(other, "val")


def test_sizes_take_the_first_rows_of_each_split(tmp_path):
    every, some = pairs(tmp_path), pairs(tmp_path, train_size=5, val_size=2, test_size=1000)
    every.setup()
    some.setup()
    assert rows(some, "train") == rows(every, "train")[:5] and rows(some, "val") == rows(every, "val")[:2]
    assert rows(some, "test") == rows(every, "test")
    assert some.cache == every.cache  # one cache for every size: a learning curve tokenizes once


def test_a_second_data_module_reads_the_cache_instead_of_tokenizing_again(tmp_path, monkeypatch):
    first = pairs(tmp_path)
    first.setup()
    mtimes = {path: path.stat().st_mtime_ns for path in first.cache.rglob("*")}
    calls = []
    monkeypatch.setattr(TextTokenizer, "train", lambda *args: calls.append("train"))
    monkeypatch.setattr(TextTokenizer, "encode_batch", lambda *args: calls.append("encode"))
    second = pairs(tmp_path)
    second.setup()
    assert calls == [] and second.cache == first.cache
    assert {path: path.stat().st_mtime_ns for path in second.cache.rglob("*")} == mtimes
    assert rows(second, "train") == rows(first, "train")
    assert isinstance(second.splits["train"].columns["src"].ids, np.memmap)


def test_a_changed_file_is_tokenized_again(tmp_path):
    first = pairs(tmp_path)
    first.setup()
    path = tmp_path / "pairs.tsv"
    path.write_text(path.read_text().replace("dog", "cat"))
    second = TextPair(train_file=str(path), **HELD_OUT, tokenizer=WORD_TOKENIZER, cache_dir=str(tmp_path / "cache"))
    second.setup()
    assert second.cache != first.cache
    assert "dog" not in {second.vocab.decode(row) for row in rows(second, "train")}


def test_rows_over_the_length_limits_are_dropped_counted_and_reported(tmp_path, caplog):
    dm = pairs(tmp_path, max_source_tokens=4, max_target_tokens=3)  # sources of 2..6 words, targets of 1..4
    counts = dm.meta["splits"]
    dropped = sum(counts[split]["dropped"].get("too long", 0) for split in counts)
    lines = (tmp_path / "pairs.tsv").read_text().splitlines()[1:]
    too_long = sum(len(s.split()) > 4 or len(t.split()) > 3 for s, t in (line.split("\t") for line in lines))
    assert dropped == too_long > 0
    assert sum(counts[split]["rows"] for split in counts) == 40 - too_long
    with caplog.at_level("INFO"):
        dm.setup()
    assert "dropped rows (data.max_source_tokens=4, data.max_target_tokens=3)" in caplog.text
    assert all(len(row) <= 4 for split in counts for row in rows(dm, split))


def test_a_build_that_fails_leaves_no_cache(tmp_path):
    (tmp_path / "val.tsv").write_text("source\ttarget\na b\tc\nd\n")
    with pytest.raises(ConfigError, match=r"val\.tsv:3: 1 fields"):
        pairs(tmp_path, val_fraction=None, val_file=str(tmp_path / "val.tsv"))
    assert list((tmp_path / "cache" / "tokens").iterdir()) == []


def test_aligned_source_and_target_files_give_the_same_pairs_as_a_table(tmp_path):
    table = pairs(tmp_path)
    lines = [line.split("\t") for line in (tmp_path / "pairs.tsv").read_text().splitlines()[1:]]
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s, _ in lines))
    (tmp_path / "tgt.txt").write_text("".join(t + "\n" for _, t in lines))
    aligned = pairs(
        tmp_path, train_file=None, source_file=str(tmp_path / "src.txt"), target_file=str(tmp_path / "tgt.txt")
    )
    for dm in (table, aligned):
        dm.setup()
    assert rows(aligned, "val") == rows(table, "val")


def test_the_ragged_batches_go_to_worker_processes_without_their_arrays(tmp_path):
    dm = pairs(tmp_path)
    dm.setup()
    data = dm.splits["train"]
    copy = pickle.loads(pickle.dumps(data))
    assert len(pickle.dumps(data)) < 2000
    assert all(torch.equal(copy[[0, 3]][k], data[[0, 3]][k]) for k in ("src", "tgt"))
    assert data.length_keys().shape == (len(data),)


def labelled(tmp_path: Path, **kwargs) -> TextClassification:
    settings = {"train_file": str(write_labelled(tmp_path / "labelled.jsonl")), **HELD_OUT, "batch_size": 5}
    return TextClassification(**{**settings, "tokenizer": WORD_TOKENIZER, "cache_dir": str(tmp_path / "c"), **kwargs})


def test_classification_inputs_are_cls_a_sep_b_sep_with_segments_and_sorted_labels(tmp_path):
    dm = labelled(tmp_path, text_b_column="second")
    dm.setup()
    assert dm.class_names == ["maybe", "no", "yes"] and dm.num_classes == 3
    records = {(r["text"], r["second"]): r["label"] for r in map(json.loads, (tmp_path / "labelled.jsonl").open())}
    batch = next(iter(dm.train_dataloader()))
    for ids, segments, label in zip(batch["ids"], batch["segments"], batch["labels"], strict=True):
        real = ids[ids != PAD].tolist()
        first_sep = real.index(dm.vocab.sep_id)
        assert real[0] == dm.vocab.cls_id and real[-1] == dm.vocab.sep_id
        a, b = dm.vocab.decode(real[1:first_sep]), dm.vocab.decode(real[first_sep + 1 : -1])
        assert dm.class_names[label] == records[(a, b)]
        assert segments.tolist() == [0] * (first_sep + 1) + [1] * (len(real) - first_sep - 1) + [0] * (
            len(ids) - len(real)
        )


def test_given_labels_keep_their_order(tmp_path):
    dm = labelled(tmp_path, labels=["yes", "no", "maybe"])
    dm.setup()
    batch = dm.splits["train"][list(range(len(dm.splits["train"])))]
    assert dm.class_names == ["yes", "no", "maybe"]
    records = {r["text"]: r["label"] for r in map(json.loads, (tmp_path / "labelled.jsonl").open())}
    for ids, label in zip(batch["ids"], batch["labels"], strict=True):
        text = dm.vocab.decode(ids[1 : (ids != PAD).sum() - 1])
        assert dm.class_names[label] == records[text]


def corpus(tmp_path: Path, **kwargs) -> TextCorpus:
    settings = {"train_file": str(write_corpus(tmp_path / "corpus.txt")), **HELD_OUT, "batch_size": 6}
    return TextCorpus(**{**settings, "tokenizer": WORD_TOKENIZER, "cache_dir": str(tmp_path / "c"), **kwargs})


def test_corpus_examples_pair_a_sentence_with_the_next_or_another_documents_and_mask_the_same_each_time(tmp_path):
    dm = corpus(tmp_path, mask_rate=0.3, seed=3)
    dm.setup()
    documents = [d.splitlines() for d in (tmp_path / "corpus.txt").read_text().strip().split("\n\n")]
    follows = {(a, b) for d in documents for a, b in itertools.pairwise(d)}
    data = dm.splits["train"]
    batch = data[list(range(len(data)))]
    assert torch.equal(batch["ids"], data[list(range(len(data)))]["ids"])  # static masks
    assert 0 < int(batch["is_next"].sum()) < len(data)
    for ids, labels, segments, is_next in zip(
        *(batch[k] for k in ("ids", "mlm_labels", "segments", "is_next")), strict=True
    ):
        real = torch.where(labels != IGNORE_INDEX, labels, ids)[ids != PAD].tolist()
        first_sep = real.index(dm.vocab.sep_id)
        a, b = dm.vocab.decode(real[1:first_sep]), dm.vocab.decode(real[first_sep + 1 : -1])
        assert ((a, b) in follows) == bool(is_next)
        assert int((segments == 1).sum()) == len(real) - first_sep - 1
    assert (batch["ids"] == dm.vocab.mask_id).any() and (batch["mlm_labels"] != IGNORE_INDEX).any()


def test_a_tokenizer_file_is_used_as_it_is_and_refused_when_it_lacks_a_needed_token(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: 4 + i for i, w in enumerate(WORDS)}}
    bare = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    bare.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bare.save(str(tmp_path / "tokenizer.json"))
    file = TokenizerConfig(file=str(tmp_path / "tokenizer.json"))
    dm = labelled(tmp_path, tokenizer=file)
    assert dm.vocab_size == 4 + len(WORDS) and dm.vocab.cls_id == 2
    with pytest.raises(ConfigError, match=r"tokenizer.json: the tokenizer has no mask token \(<mask>/\[MASK\]\)"):
        corpus(tmp_path, tokenizer=file)


# -- a fit through the CLI -----------------------------------------------------------------------------------------
FAST = ["--trainer.fast_dev_run=true", "--data.cache_dir=cache", "--data.tokenizer.kind=word", *QUIET]


@pytest.mark.parametrize(
    ("model", "data", "write", "extra"),
    [
        (TINY_MODEL, "TextPair", write_pairs, ["--data.max_source_tokens=9"]),
        (TINY_CLASSIFIERS["BertClassifier"], "TextClassification", write_labelled, ["--data.text_b_column=second"]),
        (["--model=BertPretraining", *TINY_BERT], "TextCorpus", write_corpus, ["--data.max_tokens=20"]),
    ],
    ids=["TextPair", "TextClassification", "TextCorpus"],
)
def test_a_fast_dev_run_fit_through_the_cli(model, data, write, extra):
    path = write(Path(f"train{'.tsv' if data == 'TextPair' else '.jsonl' if 'Class' in data else '.txt'}"))
    held_out = ["--data.val_fraction=0.25", "--data.test_fraction=0.25"]
    run_cli("fit", *model, f"--data={data}", f"--data.train_file={path}", *held_out, *extra, *FAST)
    assert any(Path("cache/tokens").iterdir())


def test_the_cache_root_is_the_key_then_the_environment_then_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NLPARENA_CACHE", str(tmp_path / "from_env"))
    dm = pairs(tmp_path, cache_dir=None)
    assert dm.cache.is_relative_to(tmp_path / "from_env")
    assert cache_root("mine") == Path("mine")
    monkeypatch.delenv("NLPARENA_CACHE")
    assert cache_root(None) == Path("~/.cache/nlparena").expanduser()


def test_a_large_file_shows_a_progress_bar_while_it_is_tokenized(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(text_data, "PROGRESS_BYTES", 0)
    pairs(tmp_path)
    assert f"tokenizing {tmp_path}/pairs.tsv" in capsys.readouterr().err


def test_a_file_below_the_progress_bar_size_shows_none_when_it_also_gives_the_held_out_rows(
    tmp_path, monkeypatch, capsys
):
    path = write_pairs(tmp_path / "pairs.tsv")
    monkeypatch.setattr(text_data, "PROGRESS_BYTES", path.stat().st_size + 1)
    TextPair(train_file=str(path), **HELD_OUT, tokenizer=WORD_TOKENIZER, cache_dir=str(tmp_path / "cache"))
    assert "tokenizing" not in capsys.readouterr().err


def test_an_unchanged_files_hash_is_remembered_and_a_changed_file_is_read_again(tmp_path, monkeypatch):
    path = write_pairs(tmp_path / "pairs.tsv")
    monkeypatch.setattr(text_cache, "SETTLED_SECONDS", -1.0)  # as if the file had been written a while ago
    read = []
    monkeypatch.setattr(text_cache, "content_hash", lambda file: read.append(file) or text_files.content_hash(file))

    def cache_of_a_new_data_module() -> Path:
        return TextPair(train_file=str(path), **HELD_OUT, tokenizer=WORD_TOKENIZER, cache_dir=str(tmp_path / "c")).cache

    first = cache_of_a_new_data_module()
    assert cache_of_a_new_data_module() == first and read == [path]
    path.write_text(path.read_text().replace("dog", "cat"))  # the same size
    os.utime(path, ns=(10**18 + 7, 10**18 + 7))  # a distinct mtime, should the write fall in the same clock tick
    assert cache_of_a_new_data_module() != first and read == [path, path]


def test_the_hash_of_a_file_changed_seconds_ago_is_not_remembered(tmp_path, monkeypatch):
    path = write_pairs(tmp_path / "pairs.tsv")
    read = []
    monkeypatch.setattr(text_cache, "content_hash", lambda file: read.append(file) or text_files.content_hash(file))
    for _ in range(2):
        TextPair(train_file=str(path), **HELD_OUT, tokenizer=WORD_TOKENIZER, cache_dir=str(tmp_path / "c"))
    assert read == [path, path] and not (tmp_path / "c" / "hashes").exists()


@pytest.mark.parametrize("train_size", [1, 3, None])
def test_held_out_inputs_seen_in_training_are_counted_among_the_training_rows_in_use(tmp_path, train_size):
    path = tmp_path / "pairs.tsv"
    path.write_text("source\ttarget\n" + "".join(f"{WORDS[i % 5]}\t{WORDS[i % 12]}\n" for i in range(60)))
    dm = TextPair(
        train_file=str(path), **HELD_OUT, train_size=train_size, tokenizer=WORD_TOKENIZER, cache_dir=str(tmp_path)
    )
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        dm.setup()
    in_training = set(rows(dm, "train"))
    counts = {split: sum(row in in_training for row in rows(dm, split)) for split in ("val", "test")}
    if train_size == 1:  # the training rows in use, not all of them (which have every input)
        assert 0 < counts["val"] < len(dm.splits["val"])
    said = " and ".join(
        f"{count} of {len(dm.splits[split])} {name} rows"
        for (split, count), name in zip(counts.items(), ("validation", "test"), strict=True)
        if count
    )
    said_in_warnings = [str(w.message).split(" have ")[0] for w in warned if "occurs in training" in str(w.message)]
    assert said_in_warnings == ([f"TextPair: {said}"] if said else [])


def test_held_out_rows_whose_input_is_in_training_are_counted_in_a_warning_and_kept(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("source\ttarget\n" + "".join(f"same words\tt{i}\n" for i in range(30)))
    dm = TextPair(train_file=str(path), **HELD_OUT, tokenizer=WORD_TOKENIZER, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning) as warned:
        dm.setup()
    val, test = len(dm.splits["val"]), len(dm.splits["test"])
    assert val + test + len(dm.splits["train"]) == 30
    message = f"TextPair: {val} of {val} validation rows and {test} of {test} test rows have an input that also occurs"
    assert any(message in str(w.message) for w in warned)


def test_two_processes_share_a_split_without_repeating_a_row(tmp_path):
    dm = pairs(tmp_path)
    dm.setup()
    shares = [list(ShardedBatches(dm.splits["val"], 3, False, 0, num_replicas=2, rank=rank)) for rank in (0, 1)]
    served = sorted(i for share in shares for batch in share for i in batch)
    assert served == list(range(len(dm.splits["val"])))
    bucketed = ShardedBatches(dm.splits["train"], 4, True, 0, bucket_window=2)
    assert sorted(i for batch in bucketed for i in batch) == list(range(len(dm.splits["train"])))
