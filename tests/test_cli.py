import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nlparena.cli import NlpArenaCLI
from nlparena.events import read_events
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli, scalars

LEARNED = [*TINY_MODEL, "--model.transformer.positions=learned", "--data=Copy", *TINY_DATA, *QUIET]
# `nlparena compare` configs (a `runs:` list; configs/compare/ and some experiments) are not fit configs:
# tests/test_compare.py parses them and their runs
CONFIGS = sorted(
    str(p) for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml") if "\nruns:" not in p.read_text()
)


def test_configs_folder_is_not_empty():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: Path(p).name)
def test_every_config_parses_and_instantiates(config):
    args = (
        ["-c", config] if "trainer" not in Path(config).parts else ["-c", config, "--model=Transformer", "--data=Copy"]
    )
    if "pretrained:" in Path(config).read_text():  # the pre-training checkpoint is made by another config
        args.append("--model.pretrained=null")
    if "accelerator: gpu" in Path(config).read_text() and not torch.cuda.is_available():
        args += ["--trainer.accelerator=cpu", "--trainer.devices=1"]  # every other key of the GPU configs is parsed
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
            "--model Transformr: unknown model; choose one of BertClassifier, BertPretraining, DecoderOnly, "
            "DecoderOnlyClassifier, RNNClassifier, Seq2Seq, Seq2SeqAttention, Transformer",
        ),
        (
            ["--model=Transformer", "--data=Revers"],
            "--data Revers: unknown data; choose one of Copy, LanguagePair",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--model.transformer.d_model=30", "--model.transformer.n_heads=4"],
            "model.transformer.d_model=30 must be divisible by model.transformer.n_heads=4",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--data.vocab_size=2", "--data.train_lengths=[3, 4]"],
            "too few distinct inputs",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--data.test_lengths=[0, 5]"],
            "data.test_lengths=[0, 5]: need 1 <= min <= max",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--model.transformer.dropout=1.5"],
            "model.transformer.dropout=1.5: must be in [0, 1)",
        ),
        (
            ["--model=Transformer", "--data=Copy", "--model.transformer.d_model=0"],
            "model.transformer.d_model=0: must be at least 1",
        ),
        (
            ["--model=Seq2Seq", "--data=Copy", "--model.rnn.hidden_size=0"],
            "model.rnn.hidden_size=0: must be at least 1",
        ),
        (
            ["--model=Seq2SeqAttention", "--data=Copy", "--model.attention.kind=luong"],
            "--model.attention.kind=luong: not one of 'bahdanau', 'dot', 'general'",
        ),
        (
            ["--model=Seq2SeqAttention", "--data=Copy", "--model.attention.input_feeding=true"],
            "model.attention.input_feeding=true: Luong's input feeding needs attention.kind 'dot' or 'general'",
        ),
        (["--model=Seq2Seq", "--data=Copy", "--model.beam_size=0"], "model.beam_size=0: must be at least 1"),
    ],
    ids=[
        "unknown-model",
        "unknown-data",
        "heads",
        "vocab-too-small",
        "test-length-below-1",
        "dropout",
        "d-model",
        "rnn-hidden-size",
        "unknown-attention",
        "input-feeding-with-bahdanau",
        "beam-size",
    ],
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
    run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")  # sources of 3-10
    ckpt = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    run_cli(
        "test", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--data.test_lengths=[20, 30]", f"--ckpt_path={ckpt}"
    )
    logged = read_events("logs/Copy/Transformer/version_1").scalars
    # max_len 31 in 8 buckets of 4: sources of 20-30 fall in 17-20 ... 29-32, and only there
    for metric in ("exact_match_by_length", "token_accuracy_by_length", "bleu_by_length"):
        buckets = sorted(tag.removeprefix(f"test/{metric}/") for tag in logged if tag.startswith(f"test/{metric}/"))
        assert buckets == ["17-20", "21-24", "25-28", "29-32"], metric
    assert math.isfinite(logged["test/loss"][-1][1])


def test_a_learned_checkpoint_can_be_tested_on_shorter_sequences():
    run_cli("fit", *LEARNED, "--trainer.max_epochs=1")  # sources of 3-10: a table of 11 positions
    ckpt = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    cli = NlpArenaCLI(args=["test", *LEARNED, "--data.train_lengths=[3, 5]", f"--ckpt_path={ckpt}"])
    assert cli.model.max_len == 6 < saved["net.src_embed.positions.table.weight"].shape[0] == 11
    for side in ("src_embed", "tgt_embed"):
        table = cli.model.state_dict()[f"net.{side}.positions.table.weight"]
        assert torch.equal(table, saved[f"net.{side}.positions.table.weight"][:6]), side  # the first rows, as trained
    assert "test/exact_match" in read_events(cli.trainer.log_dir).scalars


@pytest.fixture
def copy_checkpoint() -> str:
    """An (untrained) Copy checkpoint of a tiny Transformer; vocabulary 0-9, max_len 11."""
    run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")
    return "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (["3 9 x 1"], "token 'x' in '3 9 x 1' is not in the vocabulary; allowed: 0 1 2 3 4 5 6 7 8 9"),
        (["3 9", "  "], "empty input: give at least one token"),
        (["1 " * 12], "has 12 tokens; this model takes at most 11"),
        (["--decode=top_k", "3 9"], "argument --decode: invalid choice: 'top_k'"),
        (["--beam_size=0", "3 9"], "--beam_size 0: must be at least 1"),
    ],
    ids=["out-of-vocabulary", "empty", "too-long", "unknown-decode", "beam-size"],
)
def test_translate_rejects_bad_input_with_one_line(capsys, copy_checkpoint, inputs, expected):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("translate", f"--ckpt_path={copy_checkpoint}", *inputs)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nlparena: error: ") and expected in err[0]


def test_translate_refuses_a_missing_checkpoint(capsys):
    with pytest.raises(SystemExit):
        run_cli("translate", "--ckpt_path=nowhere/last.ckpt", "3 9")
    assert capsys.readouterr().err.strip() == "nlparena: error: --ckpt_path nowhere/last.ckpt: no such file"


def test_translate_prints_one_line_per_input(capsys, copy_checkpoint):
    capsys.readouterr()
    run_cli("translate", f"--ckpt_path={copy_checkpoint}", "--decode=beam", "3 9 4 1", "7 7")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    tokens = {str(i) for i in range(10)} | {"<sep>", "<cls>", "<mask>"}  # untrained: any token but PAD, BOS, EOS
    assert all(set(line.split()) <= tokens for line in lines), lines


def test_a_warmup_longer_than_the_run_is_refused_in_one_line_before_training(capsys):
    args = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *args, "--trainer.callbacks+=Warmup", "--trainer.callbacks.steps=500")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "nlparena: error: Warmup: 500 warmup steps but the run has only 12 optimizer steps"
    assert not list(Path("logs").rglob("*.ckpt"))


@pytest.mark.parametrize(("interval", "halvings"), [("step", [0, 1, 2, 3]), ("epoch", [0, 0, 0, 0])])
def test_the_scheduler_steps_per_optimizer_step_or_per_epoch_as_the_config_says(interval, halvings):
    args = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_steps=4", "--trainer.log_every_n_steps=1"]
    schedule = ["--lr_scheduler=StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5"]
    run_cli("fit", *args, *schedule, f"--lr_scheduler_interval={interval}")
    lrs = read_events("logs/Copy/Transformer/version_0").values("lr-AdamW")[:4]
    assert lrs == pytest.approx([1e-3 * 0.5**h for h in halvings])


def test_the_lr_is_logged_at_every_optimizer_step_whatever_the_logging_interval():
    args = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_steps=5", "--trainer.log_every_n_steps=50"]
    decay = ["--lr_scheduler=StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5"]
    run_cli("fit", *args, *decay, "--lr_scheduler_interval=step", "--trainer.accumulate_grad_batches=2")
    logged = scalars("logs/Copy/Transformer/version_0")
    assert logged["lr-AdamW"] == [(step, pytest.approx(1e-3 * 0.5**step)) for step in range(5)]
    assert "train/loss" not in logged  # the other metrics still wait for log_every_n_steps


def test_a_run_of_equal_lrs_is_written_as_its_ends_and_the_drawn_curve_is_still_every_steps_lr():
    args = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_steps=8", "--trainer.log_every_n_steps=50"]
    steps_of_three = ["--lr_scheduler=StepLR", "--lr_scheduler.step_size=3", "--lr_scheduler.gamma=0.5"]
    run_cli("fit", *args, *steps_of_three, "--lr_scheduler_interval=step")
    points = scalars("logs/Copy/Transformer/version_0")["lr-AdamW"]
    assert [step for step, _ in points] == [0, 2, 3, 5, 6, 7]  # each run's first and last step, and the last step
    # TensorBoard draws straight lines between points: read there, the curve is the lr of every step
    drawn = np.interp(range(8), [step for step, _ in points], [lr for _, lr in points])
    assert drawn == pytest.approx([1e-3 * 0.5 ** (step // 3) for step in range(8)])


def test_a_misspelt_scheduler_interval_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        run_cli(
            "fit",
            *TINY_MODEL,
            "--data=Copy",
            "--lr_scheduler=StepLR",
            "--lr_scheduler.step_size=1",
            "--lr_scheduler_interval=steps",
        )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lr_scheduler_interval" in err and "'step', 'epoch'" in err and "steps" in err
    assert not Path("logs").exists()


def test_the_progress_bar_refresh_rate_is_a_config_key_with_a_default(capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_MODEL, "--data=Copy", "--print_config")
    assert "progress_bar:\n  refresh_rate: 20\n" in capsys.readouterr().out
    args = [*TINY_MODEL, "--data=Copy", *TINY_DATA]
    every_step = NlpArenaCLI(args=[*args, "--progress_bar.refresh_rate=1"], run=False).trainer
    assert every_step.progress_bar_callback.refresh_rate == 1
    none = NlpArenaCLI(args=[*args, "--trainer.enable_progress_bar=false"], run=False).trainer
    assert none.progress_bar_callback is None
