"""`nlparena fit|validate|test|predict`: a LightningCLI with models and data chosen by class name."""

from __future__ import annotations

import re
import warnings
from typing import Any, ClassVar, Literal, NoReturn

from jsonargparse import Namespace, set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeUnion, ReduceLROnPlateau
from torch.optim import Optimizer

from nlparena.callbacks import AttentionMaps, ConfusionMatrices, StepLearningRateMonitor
from nlparena.errors import ConfigError, config_error_in
from nlparena.models import ArenaModel

ARGS_WARNING = "LightningCLI's args parameter is intended to run from within Python"

# `--help` shows the one-line docstring under each field of a network config (TransformerConfig, ...)
set_parsing_settings(docstring_parse_attribute_docstrings=True)


def subclasses(base: type) -> dict[str, type]:
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
        for sub in set(subclasses(base).values())
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
        cause = config_error_in(ex)
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
        # The progress bar is a setting of its own (`--progress_bar.refresh_rate 1`), always added unless
        # `trainer.enable_progress_bar` is false. Every 20 steps by default: a redraw costs as much as a tiny
        # model's step.
        parser.add_lightning_class_args(TQDMProgressBar, "progress_bar")
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
                "progress_bar.refresh_rate": 20,
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "logs", "name": None, "default_hp_metric": False},
                },
            }
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer of the config, with the progress bar left out when `trainer.enable_progress_bar` is false
        (Lightning refuses a progress bar callback then)."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        forced = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        if config.get("enable_progress_bar") is False:
            forced = [callback for callback in forced if not isinstance(callback, ProgressBar)]
        return self._instantiate_trainer(config, forced)

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
        model_class = subclasses(ArenaModel).get(config.model.class_path)
        data_class = subclasses(LightningDataModule).get(config.data.class_path)
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
