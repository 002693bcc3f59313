"""What `nlparena fit` leaves in `checkpoints/`, and that a run resumed from it is the run that never stopped."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from nlparena.cli import NlpArenaCLI
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, scalars
from tests.models.test_classification import PRETRAIN, TINY_CLASSIFIERS, TINY_SPLITS

# every model with dropout, so that a resumed run must continue the random streams to end where the other does
WITH_DROPOUT = {
    "Transformer": [*TINY_MODEL, "--model.transformer.dropout=0.1", "--data=Copy", *TINY_DATA, *QUIET],
    "RNNClassifier": [*TINY_CLASSIFIERS["RNNClassifier"], "--model.rnn.dropout=0.1", "--data=Sentiment", *TINY_SPLITS],
    "BertClassifier": [*TINY_CLASSIFIERS["BertClassifier"], "--model.bert.dropout=0.1", "--data=SentimentPair"],
    "BertPretraining": [*PRETRAIN, "--model.bert.dropout=0.1"],
}
for name in ("RNNClassifier", "BertClassifier"):
    WITH_DROPOUT[name] += [*TINY_SPLITS, *QUIET] if name == "BertClassifier" else QUIET


def fit(*args: str) -> NlpArenaCLI:
    return NlpArenaCLI(args=["fit", "--seed_everything=0", *args])


def run_dir(cli: NlpArenaCLI) -> Path:
    return Path(cli.trainer.logger.log_dir)


def last_checkpoint(cli: NlpArenaCLI) -> dict:
    return torch.load(run_dir(cli) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[key].double() - b[key].double()).abs().max().item() for key in a if a[key].numel())


def validation_scalars(cli: NlpArenaCLI) -> dict[str, list[tuple[int, float]]]:
    return {tag: points for tag, points in scalars(run_dir(cli)).items() if tag.startswith("val/")}


def test_last_ckpt_holds_the_last_epoch_when_the_metric_never_improves():
    # lr 1e-6: the weights move, validation exact match stays 0, so the best checkpoint stays that of epoch 0
    cli = fit(*WITH_DROPOUT["Transformer"], "--optimizer.init_args.lr=1e-6", "--trainer.max_epochs=3")
    exact_match = [value for _, value in validation_scalars(cli)["val/exact_match"]]
    assert len(exact_match) == 3 and set(exact_match) == {exact_match[0]}  # never improved
    folder = run_dir(cli) / "checkpoints"
    assert sorted(path.name for path in folder.iterdir()) == [
        f"best-epoch000-step{cli.trainer.num_training_batches}.ckpt",
        "last.ckpt",
    ]
    last = last_checkpoint(cli)
    assert (last["epoch"], last["global_step"]) == (2, cli.trainer.global_step)
    assert max_abs_difference(last["state_dict"], cli.model.state_dict()) == 0


def test_a_fit_stopped_by_max_steps_mid_epoch_leaves_that_step_in_last_ckpt():
    cli = fit(*WITH_DROPOUT["Transformer"], "--trainer.max_steps=5")
    assert cli.trainer.num_training_batches > 5  # stopped before the epoch's end and its validation
    last = last_checkpoint(cli)
    assert (last["epoch"], last["global_step"]) == (0, 5)
    assert max_abs_difference(last["state_dict"], cli.model.state_dict()) == 0


class StopMidEpoch(Callback):
    """Ends the run with an error in the middle of an epoch, as a kill would (but with Lightning's handlers)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 3:
            raise KeyError("stopped")


def test_a_run_stopped_mid_epoch_loses_only_that_epoch():
    cli = NlpArenaCLI(args=[*WITH_DROPOUT["Transformer"], "--trainer.max_epochs=4"], run=False)
    cli.trainer.callbacks.append(StopMidEpoch(epoch=2))
    with pytest.raises(KeyError, match="stopped"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    last = last_checkpoint(cli)
    assert (last["epoch"], last["global_step"]) == (1, 2 * cli.trainer.num_training_batches)


@pytest.mark.parametrize("model", WITH_DROPOUT)
def test_resuming_from_last_ckpt_ends_bit_identical_to_an_uninterrupted_run(model):
    args = WITH_DROPOUT[model]
    uninterrupted = fit(*args, "--trainer.max_epochs=4")
    first_half = fit(*args, "--trainer.max_epochs=2")
    resumed = fit(*args, "--trainer.max_epochs=4", f"--ckpt_path={run_dir(first_half) / 'checkpoints' / 'last.ckpt'}")
    assert resumed.trainer.global_step == uninterrupted.trainer.global_step
    assert max_abs_difference(resumed.model.state_dict(), uninterrupted.model.state_dict()) == 0
    assert max_abs_difference(last_checkpoint(resumed)["state_dict"], uninterrupted.model.state_dict()) == 0
    whole, halves = validation_scalars(uninterrupted), [validation_scalars(first_half), validation_scalars(resumed)]
    assert whole.keys() == halves[0].keys() == halves[1].keys()
    assert len(whole["val/loss"]) == 4
    for tag, points in whole.items():
        assert points == halves[0][tag] + halves[1][tag], tag


def training_scalars(cli: NlpArenaCLI) -> dict[str, list[tuple[int, float]]]:
    return {tag: points for tag, points in scalars(run_dir(cli)).items() if tag.startswith("train/")}


@pytest.mark.parametrize("model", ["Transformer", "RNNClassifier"])
def test_the_first_training_log_after_a_resume_covers_the_whole_logging_window(model):
    # 12 batches an epoch, a log every 5 steps: the log at step 25 covers steps 21-25, across the resume at step 24
    args = [*WITH_DROPOUT[model], "--trainer.log_every_n_steps=5"]
    uninterrupted = fit(*args, "--trainer.max_epochs=4")
    first_half = fit(*args, "--trainer.max_epochs=2")
    resumed = fit(*args, "--trainer.max_epochs=4", f"--ckpt_path={run_dir(first_half) / 'checkpoints' / 'last.ckpt'}")
    assert first_half.trainer.global_step % 5 != 0  # the resume falls inside a logging window
    whole, halves = training_scalars(uninterrupted), [training_scalars(first_half), training_scalars(resumed)]
    assert whole.keys() == halves[0].keys() == halves[1].keys()
    assert "train/loss" in whole
    for tag, points in whole.items():
        assert points == halves[0][tag] + halves[1][tag], tag


def test_num_workers_does_not_change_the_trained_weights():
    args = [*WITH_DROPOUT["BertClassifier"], "--trainer.max_epochs=3"]
    in_process, with_workers = fit(*args, "--data.num_workers=0"), fit(*args, "--data.num_workers=2")
    assert max_abs_difference(in_process.model.state_dict(), with_workers.model.state_dict()) == 0
    assert validation_scalars(in_process) == validation_scalars(with_workers)
