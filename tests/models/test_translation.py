import glob
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nlparena.models import Transformer
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli

TASKS = ["Copy", "Reverse", "Sort", "LanguagePair"]


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("task", TASKS)
def test_fast_dev_run_trains_validates_and_tests_every_task(task):
    run_cli("fit", *TINY_MODEL, f"--data={task}", *TINY_DATA, *QUIET, "--trainer.fast_dev_run=2")
    run_cli("test", *TINY_MODEL, f"--data={task}", *TINY_DATA, *QUIET, "--trainer.fast_dev_run=1")


def test_tensorboard_shows_losses_metrics_learning_rate_and_samples():
    run_cli(
        "fit",
        *TINY_MODEL,
        "--data=Reverse",
        *TINY_DATA,
        *QUIET,
        "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1",
    )
    run_dir = Path("logs/Reverse/Transformer/version_0")
    acc = events(run_dir)
    scalars = set(acc.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/token_accuracy",
        "train/exact_match",
        "val/loss",
        "val/token_accuracy",
        "val/exact_match",
        "val/bleu",
        "lr-AdamW",
    }
    assert expected <= scalars, expected - scalars
    assert any(tag.startswith("val/exact_match_by_length/") for tag in scalars)
    assert len(acc.Scalars("val/exact_match")) == 2  # one per epoch
    samples = acc.Tensors("val/samples/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert samples.startswith("| source | reference | output |") and samples.count("\n") == 2 + 4 - 1
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert glob.glob(str(run_dir / "checkpoints" / "best-*.ckpt"))


def test_a_second_run_gets_a_new_folder():
    for _ in range(2):
        run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")
    assert sorted(p.name for p in Path("logs/Copy/Transformer").iterdir()) == ["version_0", "version_1"]


def test_two_runs_with_the_same_seed_end_with_identical_metrics_and_weights():
    finals = []
    for name in ("a", "b"):
        run_cli(
            "fit",
            *TINY_MODEL,
            "--data=Reverse",
            *TINY_DATA,
            *QUIET,
            "--trainer.max_epochs=2",
            "--seed_everything=7",
            "--model.dropout=0.2",
            f"--trainer.logger.init_args.name={name}",
        )
        run_dir = Path(f"logs/{name}/version_0")
        acc = events(run_dir)
        metrics = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
        weights = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
        finals.append((metrics, weights))
    (metrics_a, weights_a), (metrics_b, weights_b) = finals
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


def test_checkpoint_loads_back_with_its_hyperparameters():
    run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")
    model = Transformer.load_from_checkpoint("logs/Copy/Transformer/version_0/checkpoints/last.ckpt")
    assert model.hparams.d_model == 16 and model.hparams.vocab_size == 16  # 10 symbols + 6 specials
    out = model.decode(torch.tensor([[7, 8, 9]]))
    assert out.shape[0] == 1
