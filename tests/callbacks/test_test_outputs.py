"""`test_outputs.csv`: one row per test example, in the split's order, whose correctness is what the test metrics
count; the same file from 1 and 2 processes."""

import csv
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.classification import multiclass_f1_score

from nlparena.callbacks.test_outputs import COLUMNS, FILE_NAME
from nlparena.cli import NlpArenaCLI
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, evaluate_in_one_and_two_processes, run_cli, scalars
from tests.models.test_classification import TINY_CLASSIFIERS, TINY_SPLITS

TRANSLATION = [*TINY_MODEL, "--data=Reverse", *TINY_DATA, *QUIET, "--data.test_size=23"]  # batches of 8, 8, 7
CLASSIFICATION = [*TINY_CLASSIFIERS["RNNClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def fit_and_test(*args: str) -> tuple[NlpArenaCLI, list[dict[str, str]]]:
    cli = NlpArenaCLI(args=["fit", "--seed_everything=0", *args, "--trainer.max_epochs=2"])
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    run_dir = Path(cli.trainer.log_dir)
    return cli, read_rows(run_dir / FILE_NAME)


def test_translation_rows_are_the_test_split_in_order_and_count_what_exact_match_counts():
    cli, rows = fit_and_test(*TRANSLATION)
    test = cli.datamodule.splits["test"].tensors
    vocab = cli.datamodule.vocab
    assert [int(row["index"]) for row in rows] == list(range(23))
    assert [row["source"] for row in rows] == [vocab.decode(src) for src in test["src"]]
    assert [row["reference"] for row in rows] == [vocab.decode(tgt) for tgt in test["tgt"]]
    exact_match = scalars(cli.trainer.log_dir)["test/exact_match"][-1][1]
    correct = [int(row["correct"]) for row in rows]
    assert sum(correct) / len(correct) == pytest.approx(exact_match, abs=1e-6)
    assert all((row["output"] == row["reference"]) == bool(c) for row, c in zip(rows, correct, strict=True))


def test_classification_rows_give_back_the_logged_accuracy_and_macro_f1():
    cli, rows = fit_and_test(*CLASSIFICATION)
    names = cli.datamodule.class_names
    assert {row["reference"] for row in rows} <= set(names) and {row["output"] for row in rows} <= set(names)
    labels = torch.tensor([names.index(row["reference"]) for row in rows])
    assert labels.tolist() == cli.datamodule.splits["test"].tensors["labels"].tolist()
    preds = torch.tensor([names.index(row["output"]) for row in rows])
    logged = scalars(cli.trainer.log_dir)
    assert (preds == labels).float().mean().item() == pytest.approx(logged["test/accuracy"][-1][1], abs=1e-6)
    f1 = multiclass_f1_score(preds, labels, num_classes=len(names), average="macro").item()
    assert f1 == pytest.approx(logged["test/macro_f1"][-1][1], abs=1e-6)


def test_pretraining_writes_no_test_outputs():
    from tests.models.test_classification import PRETRAIN

    cli = NlpArenaCLI(args=["fit", *PRETRAIN, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    assert not (Path(cli.trainer.log_dir) / FILE_NAME).exists()


@pytest.mark.slow
def test_two_processes_write_the_file_one_process_writes():
    run_cli("fit", *TRANSLATION, "--trainer.max_epochs=1")
    run_dir = next(Path("logs").glob("*/*/version_0"))
    evaluate_in_one_and_two_processes("test", TRANSLATION, run_dir / "checkpoints/last.ckpt")
    written = sorted(Path("logs").rglob(FILE_NAME), key=lambda path: path.stat().st_mtime_ns)
    assert len(written) == 2, written
    one, two = (read_rows(path) for path in written)
    assert len(one) == 23 and one == two
