"""The `nlparena` command: a LightningCLI with models and data chosen by class name."""

from __future__ import annotations

import os
import re
import sys
from typing import ClassVar, NoReturn

from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from torch.optim import Optimizer

from nlparena.data import TranslationDataModule
from nlparena.errors import ConfigError
from nlparena.models import TranslationModel


def _config_error_in(ex: BaseException | None) -> ConfigError | None:
    """The ConfigError that caused `ex`, however deep jsonargparse wrapped it."""
    seen = set()
    while ex is not None and id(ex) not in seen:
        if isinstance(ex, ConfigError):
            return ex
        seen.add(id(ex))
        ex = ex.__cause__ or (None if ex.__suppress_context__ else ex.__context__)
    return None


def _choices(base: type) -> list[str]:
    """Names of the concrete subclasses of `base` that `--model` / `--data` accept."""
    found, todo = set(), [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not sub.__name__.startswith("_") and sub is not base:
                found.add(sub.__name__)
    return sorted(found)


class NlpArenaParser(LightningArgumentParser):
    """Turns jsonargparse's multi-line errors into one line naming the key and what is allowed."""

    bases: ClassVar[dict[str, type]] = {"model": TranslationModel, "data": TranslationDataModule}

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        raise ConfigError(self.one_line(message, ex)) from None

    def one_line(self, message: str, ex: Exception | None) -> str:
        cause = _config_error_in(ex)
        if cause is not None:
            return str(cause)
        key = re.match(r'Parser key "([^"]+)"', message)
        given = re.search(r"Given value: (\S+)$", message)
        if key and given and key.group(1) in self.bases and "Expected a dot import path" in message:
            names = [n for n in _choices(self.bases[key.group(1)]) if not n.endswith(("Model", "DataModule"))]
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
    """`nlparena fit|validate|test|predict`; every constructor argument is a config key."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=TranslationModel,
            datamodule_class=TranslationDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults={"callbacks": [LearningRateMonitor(logging_interval="step")]},
            save_config_kwargs={"overwrite": False},
            parser_class=NlpArenaParser,
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for size in ("vocab_size", "pad_id"):
            parser.link_arguments(f"data.{size}", f"model.init_args.{size}", apply_on="instantiate")
        parser.link_arguments("data.max_length", "model.init_args.max_len", apply_on="instantiate")
        parser.add_optimizer_args((Optimizer,))  # added here, not by LightningCLI, so that it can get a default
        parser.set_defaults(
            {
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "logs", "name": None, "default_hp_metric": False},
                },
            }
        )

    def before_instantiate_classes(self) -> None:
        """Name an unnamed TensorBoard run `<data>/<model>`: logs/Reverse/Transformer/version_N."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.trainer.logger
        tensorboard = isinstance(logger, Namespace) and logger.class_path.endswith("TensorBoardLogger")
        if tensorboard and logger.init_args.name is None:
            data, model = (config[key].class_path.rsplit(".", 1)[-1] for key in ("data", "model"))
            logger.init_args.name = f"{data}/{model}"


def main(args: list[str] | None = None) -> None:
    # Refresh the progress bar every 20 steps, not every step: a redraw costs as much as a tiny model's step.
    os.environ.setdefault("TQDM_MINITERS", "20")
    try:
        NlpArenaCLI(args=args)
    except Exception as err:
        cause = _config_error_in(err)  # jsonargparse wraps errors raised while instantiating classes
        if cause is None:
            raise
        print(f"nlparena: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
