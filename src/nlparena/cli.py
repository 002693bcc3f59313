"""The `nlparena` command: a LightningCLI with models and data chosen by class name."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn

import torch
from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeUnion, ReduceLROnPlateau
from torch.optim import Optimizer

from nlparena.callbacks import AttentionMaps, ConfusionMatrices, StepLearningRateMonitor
from nlparena.data.vocab import NUM_SPECIALS, Vocab
from nlparena.errors import ConfigError
from nlparena.models import ArenaModel, TranslationModel

ARGS_WARNING = "LightningCLI's args parameter is intended to run from within Python"


def _config_error_in(ex: BaseException | None) -> ConfigError | None:
    """The ConfigError that caused `ex`, however deep jsonargparse wrapped it."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        if isinstance(ex, ConfigError):
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or (None if ex.__suppress_context__ else ex.__context__)
    return None


def _subclasses(base: type) -> dict[str, type]:
    """The public subclasses of `base`, by import path (`nlparena.models.translation.Transformer`, and as exported)."""
    found, todo = {}, [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__name__.startswith("_"):
                found[f"{sub.__module__}.{sub.__qualname__}"] = sub
                package = sub.__module__.rsplit(".", 1)[0]
                found[f"{package}.{sub.__qualname__}"] = sub
    return found


def _choices(base: type, family: str | None = None) -> list[str]:
    """Names of our subclasses of `base` that `--model` / `--data` accept (for one task family if given)."""
    return sorted(
        sub.__name__
        for sub in set(_subclasses(base).values())
        if sub.__module__.startswith("nlparena.")
        and not sub.__name__.endswith(("Model", "DataModule"))
        and (family is None or getattr(sub, "family", None) == family)
    )


class NlpArenaParser(LightningArgumentParser):
    """Turns jsonargparse's multi-line errors into one line naming the key and what is allowed."""

    bases: ClassVar[dict[str, type]] = {"model": ArenaModel, "data": LightningDataModule}

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        raise ConfigError(self.one_line(message, ex)) from None

    def one_line(self, message: str, ex: Exception | None) -> str:
        cause = _config_error_in(ex)
        if cause is not None:
            return str(cause)
        key = re.match(r'Parser key "([^"]+)"', message)
        given = re.search(r"Given value: (\S+)$", message)
        if key and given and key.group(1) in self.bases and "Expected a dot import path" in message:
            names = _choices(self.bases[key.group(1)])
            return f"--{key.group(1)} {given.group(1)}: unknown {key.group(1)}; choose one of {', '.join(names)}"
        noise = (
            "Given value type",
            "Subtypes:",
            "Errors:",
            "Does not validate",
            "Expected a <class 'NoneType'>",
        )
        lines = [line.strip(" -") for line in message.splitlines()]
        lines = [line for line in lines if line and not line.startswith(noise)]
        return " ".join(lines)[:400]


class NlpArenaCLI(LightningCLI):
    """`nlparena fit|validate|test|predict`; every constructor argument is a config key.

    `nlparena translate`, `schedule` and `compare` are handled before this class is reached.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": False})
        with warnings.catch_warnings():
            # `main` and the subcommands hand their arguments over explicitly while sys.argv holds the same
            warnings.filterwarnings("ignore", message=ARGS_WARNING)
            super().__init__(
                model_class=ArenaModel,
                datamodule_class=LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                trainer_defaults={"callbacks": [StepLearningRateMonitor(), AttentionMaps(), ConfusionMatrices()]},
                parser_class=NlpArenaParser,
                args=args,
                run=run,
                **kwargs,
            )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Sizes the data decides; a link whose model has no such argument (num_classes of a translation model)
        # is skipped by jsonargparse.
        for size in ("vocab_size", "pad_id", "num_classes"):
            parser.link_arguments(f"data.{size}", f"model.init_args.{size}", apply_on="instantiate")
        parser.link_arguments("data.max_length", "model.init_args.max_len", apply_on="instantiate")
        parser.add_optimizer_args((Optimizer,))  # added here, not by LightningCLI, so that it can get a default
        # LightningCLI steps a scheduler once per epoch; a warmup or decay meant in steps needs "step". A Literal,
        # so that a misspelt "steps" is an error instead of silently meaning "epoch".
        parser.add_argument(
            "--lr_scheduler_interval",
            type=Literal["step", "epoch"],
            default="epoch",
            help="when the lr_scheduler steps: after every optimizer step or every epoch",
        )
        parser.set_defaults(
            {
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "logs", "name": None, "default_hp_metric": False},
                },
            }
        )

    def configure_optimizers(
        self, lightning_module: LightningModule, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        """The optimizer and scheduler of the config; the scheduler steps per `lr_scheduler_interval`."""
        if lr_scheduler is None:
            return optimizer
        scheduler: dict[str, Any] = {
            "scheduler": lr_scheduler,
            "interval": self._get(self.config, "lr_scheduler_interval"),
        }
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            scheduler["monitor"] = lr_scheduler.monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def before_instantiate_classes(self) -> None:
        """Check that model and data belong to the same family; name an unnamed TensorBoard run `<data>/<model>`."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        model_class = _subclasses(ArenaModel).get(config.model.class_path)
        data_class = _subclasses(LightningDataModule).get(config.data.class_path)
        family, data_family = getattr(model_class, "family", None), getattr(data_class, "family", None)
        if family and data_family and family != data_family:
            raise ConfigError(
                f"--model {model_class.__name__} trains on {family} data but --data {data_class.__name__} is "
                f"{data_family} data; choose --data from {', '.join(_choices(LightningDataModule, family))}"
            )
        logger = config.trainer.logger
        tensorboard = isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")
        if tensorboard and logger.init_args.name is None:
            data, model = (config[key].class_path.rsplit(".", 1)[-1] for key in ("data", "model"))
            logger.init_args.name = f"{data}/{model}"


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse for the subcommands that are not LightningCLI's: a bad option is a ConfigError (one line)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")


def translate(args: list[str]) -> None:
    """`nlparena translate --ckpt_path PATH "3 9 4 1" ...`: print the model's translation of each input."""
    parser = OneLineArgumentParser(prog="nlparena translate", description="Translate with a trained checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `nlparena fit`")
    parser.add_argument("--decode", choices=["greedy", "beam"], help="default: the model's own setting")
    parser.add_argument("--beam_size", type=int)
    parser.add_argument("--length_penalty", type=float)
    parser.add_argument("inputs", nargs="+", help='space-separated tokens, one string per sentence: "3 9 4 1"')
    opts = parser.parse_args(args)
    path = Path(opts.ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        vocab = Vocab(checkpoint["vocabulary"][NUM_SPECIALS:])
        # The model class is one of ours, named in the hyperparameters that LightningCLI saved; nothing is imported.
        model_class = _subclasses(TranslationModel)[checkpoint["hyper_parameters"]["_class_path"]]
        model = model_class.load_from_checkpoint(path, map_location="cpu")
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = f"not a translation checkpoint written by `nlparena fit` ({type(err).__name__}: {err})"
        raise ConfigError(f"--ckpt_path {path}: {reason}") from None
    settings = {"decoding": opts.decode, "beam_size": opts.beam_size, "length_penalty": opts.length_penalty}
    for name, value in settings.items():
        if value is not None:
            setattr(model, name, value)
    if model.beam_size < 1:
        raise ConfigError(f"--beam_size {model.beam_size}: must be at least 1")
    rows = []
    for text in opts.inputs:
        try:
            ids = vocab.encode(text)
        except KeyError as err:
            allowed = " ".join(vocab.tokens[NUM_SPECIALS:])
            unknown = f"token {err.args[0]!r} in {text!r} is not in the vocabulary"
            raise ConfigError(f"{unknown}; allowed: {allowed}") from None
        if not ids:
            raise ConfigError('empty input: give at least one token, for example "3 9 4 1"')
        if len(ids) > model.max_len:
            raise ConfigError(f"input {text!r} has {len(ids)} tokens; this model takes at most {model.max_len}")
        rows.append(torch.tensor(ids))
    src = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=model.pad_id)  # (B, S)
    model.eval()
    for out in model.decode(src):
        print(vocab.decode(out))


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A ConfigError, however deep jsonargparse or Lightning wrapped it, ends the command with
    `nlparena: error: ...` on stderr and exit status 2; any other error propagates."""
    try:
        yield
    except Exception as err:
        cause = _config_error_in(err)
        if cause is None:
            raise
        print(f"nlparena: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def main(args: list[str] | None = None) -> None:
    # Refresh the progress bar every 20 steps, not every step: a redraw costs as much as a tiny model's step.
    os.environ.setdefault("TQDM_MINITERS", "20")
    args = sys.argv[1:] if args is None else args
    with one_line_errors():
        if args[:1] == ["translate"]:
            translate(args[1:])
        elif args[:1] == ["schedule"]:
            from nlparena.schedule import schedule  # imports this module

            schedule(args[1:])
        elif args[:1] == ["compare"]:
            from nlparena.compare import compare

            compare(args[1:])
        else:
            NlpArenaCLI(args=args)


if __name__ == "__main__":
    main()
