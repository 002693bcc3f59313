"""`nlparena compare` on users' files: a learning curve over `data.train_size` of a TextClassification run trains
each point on its own number of rows, and every trial reads the one tokenizer and token cache the first one wrote."""

import csv
from pathlib import Path

import yaml

from nlparena.__main__ import main
from nlparena.events import read_events
from tests.conftest import QUIET, run_cli

LOGS = Path("logs/compare/file_curve")
BATCH = 10


def test_a_curve_over_train_size_on_files_trains_on_each_size_and_tokenizes_the_files_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sizes = ["--data.train_size=60", "--data.val_size=10", "--data.test_size=10"]
    main(["export", "--data=Sentiment", *sizes, "--out=reviews"])
    shared = [
        "--model=RNNClassifier",
        "--model.rnn.embed_dim=10",
        "--model.rnn.hidden_size=6",
        "--data=TextClassification",
        *(f"--data.{split}_file=reviews/{split}.tsv" for split in ("train", "val", "test")),
        "--data.tokenizer.kind=word",
        "--data.tokenizer.vocab_size=200",
        f"--data.cache_dir={tmp_path / 'cache'}",
        f"--data.batch_size={BATCH}",
        *QUIET,
        "--trainer.max_epochs=1",
        "--trainer.log_every_n_steps=1",
    ]
    comparison = {
        "name": "file_curve",
        "seeds": [0],
        "shared": {"args": shared},
        "curve": {"data.train_size": [20, 40]},
        "runs": [{"name": "rnn"}],
    }
    Path("file_curve.yaml").write_text(yaml.safe_dump(comparison, sort_keys=False))
    run_cli("compare", "-c", "file_curve.yaml")

    with (LOGS / "results.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["run"], row["status"]) for row in rows] == [
        ("rnn/train_size=20", "finished"),
        ("rnn/train_size=40", "finished"),
    ]
    for row, size in zip(rows, (20, 40), strict=True):
        steps = {step for step, _ in read_events(row["log_dir"]).scalars["train/loss"]}
        assert max(steps) + 1 == size // BATCH, row["run"]  # one epoch of `size` rows
    # one tokenizer and one token cache (train, val and test) for both points, written before the first trial's fit
    # began and left untouched since: a trial that tokenized again would have made a folder beside them
    cache = tmp_path / "cache"
    assert [len(list((cache / kind).iterdir())) for kind in ("tokenizers", "tokens")] == [1, 1]
    (tokens,) = (cache / "tokens").iterdir()
    assert sorted(p.name for p in tokens.iterdir() if p.is_dir()) == ["test", "train", "val"]
    # (`cache/hashes/` is not tokenization: a trial may remember a file's content hash once the file has settled)
    first_fit = (Path(rows[0]["log_dir"]) / "config.yaml").stat().st_mtime_ns
    written = [path for kind in ("tokenizers", "tokens") for path in [cache / kind, *(cache / kind).rglob("*")]]
    assert not [path for path in written if path.stat().st_mtime_ns >= first_fit]
