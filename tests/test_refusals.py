"""A value that torch, Lightning or a class refuses while it is built is named as its config key by elimination (the
class built again with one given argument reset at a time), whatever words the refusal uses."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.cli import LightningCLI

from nlparena import internals
from nlparena.cli import NlpArenaCLI
from nlparena.cli.refusals import refused_setting
from nlparena.models.translation import Transformer
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli

FIT = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1"]


class RewordedSGD(torch.optim.SGD):
    """SGD whose refusal of a negative lr names neither `lr` nor "learning rate"."""

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0) -> None:
        if lr < 0:
            raise ValueError(f"a step length below zero ({lr}) would climb the loss")
        super().__init__(params, lr=lr, momentum=momentum)


class PickyTransformer(Transformer):
    """A Transformer that refuses a setting in words that do not name it."""

    def __init__(self, warmth: int = 1, **kwargs: Any) -> None:
        if warmth > 3:
            raise ValueError("too hot")
        super().__init__(**kwargs)


def one_line_error(capsys, *args: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", *args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert len(err.splitlines()) == 1, err
    assert not Path("logs").exists() or not any(Path("logs").rglob("version_*")), err
    return err.strip()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--optimizer=tests.test_refusals.RewordedSGD", "--optimizer.init_args.lr=-1"], "optimizer.init_args.lr=-1.0"),
        (["--optimizer=Rprop", "--optimizer.init_args.etas=[1.5, 1.2]"], "optimizer.init_args.etas=(1.5, 1.2)"),
        (["--lr_scheduler=CosineAnnealingLR", "--lr_scheduler.T_max=0"], "lr_scheduler.init_args.T_max=0: "),
        (["--model=tests.test_refusals.PickyTransformer", "--model.warmth=5"], "model.warmth=5: too hot"),
    ],
    ids=["reworded-optimizer", "rprop-etas", "cosine-t-max-0", "model"],
)
def test_a_refused_setting_is_named_whatever_words_the_refusal_uses(capsys, args, expected):
    assert expected in one_line_error(capsys, *FIT, *args)


def test_a_refused_callback_setting_is_named_beside_its_class(capsys):
    args = [
        "--trainer.callbacks+=EarlyStopping",
        "--trainer.callbacks.monitor=val/loss",
        "--trainer.callbacks.mode=maxx",
    ]
    line = one_line_error(capsys, *FIT, *args)
    assert "trainer.callbacks EarlyStopping: " in line and line.endswith("(mode='maxx')")


@dataclasses.dataclass(frozen=True)
class Sizes:
    width: int = 4
    depth: int = 2


def test_elimination_finds_the_one_setting_whose_reset_lets_the_class_build():
    def build(arguments: dict[str, Any]) -> None:
        if arguments["sizes"].depth > 3:
            raise ValueError("nothing in this message names the setting")

    given = {"lr": 0.5, "sizes": Sizes(width=8, depth=9)}
    found = refused_setting(ValueError(), build, given, {"lr": 0.1, "sizes": Sizes()})
    assert found == ("sizes.depth", 9)


def test_elimination_names_nothing_when_no_single_setting_is_refused():
    def build(arguments: dict[str, Any]) -> None:
        if arguments["a"] > 0 or arguments["b"] > 0:  # both refused: resetting one alone does not help
            raise ValueError("both")

    assert refused_setting(ValueError(), build, {"a": 1, "b": 1}, {"a": 0, "b": 0}) is None


@pytest.mark.parametrize("name", internals.LIGHTNING_CLI_HOOKS)
def test_the_private_lightning_cli_hooks_we_override_still_exist(name):
    assert callable(getattr(LightningCLI, name, None)), f"LightningCLI no longer has {name}: see nlparena.internals"
    assert name in vars(NlpArenaCLI)


def test_a_checkpoint_whose_weights_do_not_load_is_one_line_naming_it(capsys):
    run_cli("fit", *FIT, "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1")
    checkpoint = torch.load(next(Path("logs").rglob("last.ckpt")), weights_only=False)
    checkpoint["state_dict"]["net.extra"] = torch.zeros(2)  # Lightning loads strictly: an unexpected tensor
    torch.save(checkpoint, "extra.ckpt")
    runs = sorted(Path("logs").rglob("version_*"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", *FIT, "--ckpt_path=extra.ckpt")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert "--ckpt_path extra.ckpt: cannot be loaded into this run (" in err and "net.extra" in err
    assert sorted(Path("logs").rglob("version_*")) == runs
