import re
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from nlparena.callbacks import NonFiniteGuard
from nlparena.cli import NlpArenaCLI
from nlparena.errors import TrainingDiverged
from nlparena.models.base import non_finite_tensors
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli, scalars
from tests.models.test_classification import TINY_BERT, TINY_SPLITS

COPY = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET]


def checkpoints_on_disk() -> dict[Path, list[str]]:
    """Every checkpoint under logs/, with its non-finite tensors (weights, optimizer state, anything)."""
    found = {}
    for path in Path("logs").rglob("*.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        tensors = dict(checkpoint["state_dict"])
        for i, state in enumerate(checkpoint["optimizer_states"][0]["state"].values()):
            tensors.update({f"optimizer.{i}.{key}": value for key, value in state.items()})
        found[path] = non_finite_tensors(tensors)
    return found


def test_a_non_finite_loss_stops_training_with_one_line_and_no_checkpoint(capsys):
    # epoch 0 trains at lr 1e-3 and is checkpointed; from epoch 1 the lr is 1e6 and the loss diverges
    jump = ["--lr_scheduler=torch.optim.lr_scheduler.StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=1e9"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *COPY, *jump, "--trainer.max_epochs=4", "--trainer.log_every_n_steps=1")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    match = re.fullmatch(
        r"nlparena: error: training stopped at step (\d+) \(epoch (\d+)\): train loss is (nan|inf|-inf); "
        r"no checkpoint of this step written; likely cause: lr too high \(optimizer lr 1000000\.0+\d*\); "
        r"lower optimizer.init_args.lr or add a Warmup, or set trainer.gradient_clip_val",
        err[0],
    )
    assert match, err[0]
    step, epoch = int(match.group(1)), int(match.group(2))
    assert epoch >= 1
    losses = scalars(next(Path("logs").rglob("version_0")))["train/loss"]
    # every step before the one named was logged, finite; nothing after it ran
    assert [s for s, _ in losses] == list(range(step))
    assert all(torch.isfinite(torch.tensor(value)) for _, value in losses)
    on_disk = checkpoints_on_disk()
    assert {path.name for path in on_disk} >= {"last.ckpt"}  # epoch 0's
    assert all(bad == [] for bad in on_disk.values()), on_disk
    assert torch.load(next(iter(p for p in on_disk if p.name == "last.ckpt")), weights_only=True)["epoch"] < epoch


def test_a_checkpoint_of_non_finite_weights_is_never_written():
    cli = NlpArenaCLI(args=[*COPY, "--trainer.max_steps=1", "--trainer.limit_val_batches=0"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    with torch.no_grad():
        next(cli.model.parameters())[0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"weights are non-finite \(net\.\S+ and 0 more|weights are non-finite"):
        cli.trainer.save_checkpoint("diverged.ckpt")
    assert not Path("diverged.ckpt").exists()


class CancellingGradients(pl.LightningModule):
    """A finite loss (0) whose gradients (+-3e38 each) have an infinite norm in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def training_step(self, batch, batch_idx):
        return (self.w * torch.tensor([3e38, -3e38, 3e38, -3e38])).sum()

    def train_dataloader(self):
        return [0, 1, 2]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def test_a_non_finite_gradient_norm_stops_training_before_the_optimizer_step(tmp_path):
    model = CancellingGradients()
    trainer = pl.Trainer(
        max_steps=3,
        gradient_clip_val=1.0,
        callbacks=[NonFiniteGuard()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.raises(TrainingDiverged, match=r"at step 0 \(epoch 0\): gradient norm is inf"):
        trainer.fit(model)
    assert torch.equal(model.w.detach(), torch.ones(4))  # the optimizer never stepped
    assert "clip_grad_by_norm" not in vars(trainer.precision_plugin)  # the plugin has its own method back


def diverged_copy(source: Path, target: str) -> str:
    checkpoint = torch.load(source, weights_only=True)
    key = [k for k, v in checkpoint["state_dict"].items() if v.is_floating_point()][-1]  # not a shared embedding
    checkpoint["state_dict"][key][0] = float("nan")
    torch.save(checkpoint, target)
    return key


def test_test_and_translate_refuse_a_checkpoint_with_non_finite_weights(capsys):
    run_cli("fit", *COPY, "--trainer.max_epochs=1")
    key = diverged_copy(next(Path("logs").rglob("last.ckpt")), "diverged.ckpt")
    capsys.readouterr()
    for command in (["test", *COPY, "--ckpt_path=diverged.ckpt"], ["translate", "--ckpt_path", "diverged.ckpt", "3 4"]):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(*command)
        assert exit_info.value.code == 2
        captured = capsys.readouterr()
        assert captured.out == ""  # translate printed nothing
        assert captured.err.strip().splitlines()[-1] == (
            f"nlparena: error: --ckpt_path diverged.ckpt: holds non-finite weights (NaN or inf in {key}): it was "
            "saved by a run that diverged; use a checkpoint written before the divergence"
        )


def test_fine_tuning_refuses_a_pretrained_checkpoint_with_non_finite_weights(capsys):
    state = {"net.bert.embeddings.tokens.weight": torch.full((3, 4), float("inf"))}
    torch.save({"state_dict": state, "hyper_parameters": {}}, "pretrained.ckpt")
    model = ["--model=BertClassifier", *TINY_BERT, "--model.pretrained=pretrained.ckpt"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *model, "--data=Sentiment", *TINY_SPLITS, *QUIET, "--trainer.max_epochs=1")
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith(
            "nlparena: error: model.pretrained=pretrained.ckpt: holds non-finite weights (NaN or inf in "
            "net.bert.embeddings.tokens.weight)"
        )
    )
