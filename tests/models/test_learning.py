"""Learning tests: a model must actually solve a task (slow, still run in CI)."""

import pytest

from nlparena.cli import NlpArenaCLI
from tests.conftest import QUIET


@pytest.mark.slow
def test_tiny_transformer_learns_copy_to_95_percent_exact_match():
    args = [
        "--model=Transformer",
        "--model.d_model=32",
        "--model.n_heads=2",
        "--model.d_ff=64",
        "--model.dropout=0.0",
        "--data=Copy",
        "--data.train_lengths=[3, 8]",
        "--data.train_size=4000",
        "--data.val_size=300",
        "--data.test_size=300",
        "--data.batch_size=32",
        "--optimizer.init_args.lr=0.003",
        "--trainer.max_epochs=8",
        "--seed_everything=0",
        *QUIET,
    ]
    cli = NlpArenaCLI(args=["fit", *args])
    assert cli.trainer.callback_metrics["val/exact_match"] >= 0.95
    (test,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="last")
    assert test["test/exact_match"] >= 0.95
