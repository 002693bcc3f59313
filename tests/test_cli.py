from pathlib import Path

import pytest

from nlparena.cli import NlpArenaCLI
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli

LEARNED = [*TINY_MODEL, "--model.positions=learned", "--data=Copy", *TINY_DATA, *QUIET]
CONFIGS = sorted(str(p) for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: Path(p).name)
def test_every_config_parses_and_instantiates(config):
    args = (
        ["-c", config] if "trainer" not in Path(config).parts else ["-c", config, "--model=Transformer", "--data=Copy"]
    )
    cli = NlpArenaCLI(args=args, run=False)
    assert cli.model.hparams.vocab_size == cli.datamodule.vocab_size
    assert cli.model.hparams.max_len == cli.datamodule.max_length


def one_line_error(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    last = err[-1]
    assert last.startswith("nlparena: error: ")
    assert not Path("logs").exists()  # nothing was written: the error came before training
    return last


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--model=Transformr", "--data=Copy"],
            "--model Transformr: unknown model; choose one of Transformer",
        ),
        (
            ["--model=Transformer", "--data=Revers"],
            "--data Revers: unknown data; choose one of Copy, LanguagePair",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--model.d_model=30", "--model.n_heads=4"],
            "model.d_model=30 must be divisible by model.n_heads=4",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--data.vocab_size=2", "--data.train_lengths=[3, 4]"],
            "vocabulary too small",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--data.test_lengths=[0, 5]"],
            "data.test_lengths=[0, 5]: need 1 <= min <= max",
        ),
        (["--model=Transformer", "--data=Copy", "--model.dropout=1.5"], "model.dropout=1.5: must be in [0, 1)"),
        (["--model=Transformer", "--data=Copy", "--model.d_model=0"], "model.d_model=0: must be at least 1"),
    ],
    ids=["unknown-model", "unknown-data", "heads", "vocab-too-small", "test-length-below-1", "dropout", "d-model"],
)
def test_bad_input_gives_one_clear_line_before_training(capsys, args, expected):
    assert expected in one_line_error(capsys, *args)


def test_sequence_beyond_learned_positional_table_is_refused_before_testing(capsys):
    run_cli("fit", *LEARNED, "--trainer.max_epochs=1")
    ckpt = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    before = {str(p): p.stat().st_mtime_ns for p in Path("logs").rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        run_cli("test", *LEARNED, "--data.test_lengths=[20, 30]", f"--ckpt_path={ckpt}")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "learned positional table holds 11 positions but the data needs 31" in err
    after = {str(p): p.stat().st_mtime_ns for p in Path("logs").rglob("*") if p.is_file() and "version_1" not in str(p)}
    assert before == after  # the earlier run's logs and checkpoints are untouched


def test_a_sinusoidal_checkpoint_can_be_tested_on_longer_sequences():
    run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")
    ckpt = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    run_cli(
        "test", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--data.test_lengths=[20, 30]", f"--ckpt_path={ckpt}"
    )


def test_a_learned_checkpoint_can_be_tested_on_shorter_sequences():
    run_cli("fit", *LEARNED, "--trainer.max_epochs=1")
    ckpt = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    run_cli("test", *LEARNED, "--data.train_lengths=[3, 5]", f"--ckpt_path={ckpt}")
