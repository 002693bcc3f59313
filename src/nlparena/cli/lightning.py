"""`nlparena fit|validate|test|predict`: a LightningCLI with models and data chosen by class name."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from functools import partial, update_wrapper
from types import MethodType
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
from jsonargparse import Namespace, set_parsing_settings
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelSummary, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import (
    LightningArgumentParser,
    LightningCLI,
    LRSchedulerTypeUnion,
    ReduceLROnPlateau,
    instantiate_class,
)
from torch.optim import Optimizer

from nlparena.callbacks import (
    AttentionMaps,
    ConfusionMatrices,
    NonFiniteGuard,
    RandomState,
    StepLearningRateMonitor,
    TestOutputs,
)
from nlparena.cli.checkpoints import (
    check_checkpoint_fits,
    check_optimizer_state,
    load_refusal,
    read_run_checkpoint,
    typed_sizes,
)
from nlparena.cli.checks import (
    check_data_decided,
    check_monitors,
    check_optimizer,
    check_save_dirs,
    check_trainer_settings,
    setup_error,
)
from nlparena.cli.logger import TENSORBOARD_LOGGERS, HParamsSession, RunFolderLogger
from nlparena.cli.parser import ConfigFile, NlpArenaParser, asks_for_help, choices, subclasses
from nlparena.cli.quiet import HeldBackOutput, ReleaseAtStart, no_folder_left_on_error
from nlparena.cli.refusals import REFUSALS, build_error, trainer_refusal
from nlparena.cli.run_config import with_run_config
from nlparena.cli.silenced import silence_foreign_lines
from nlparena.cli.summaries import NetworkSummary, fit_summary, tested_summary
from nlparena.cli.threads import set_threads
from nlparena.cli.tokenizer_of_weights import give_data_the_tokenizer_of_weights
from nlparena.errors import ConfigError, config_error_in, name_unnamed_write
from nlparena.models import ArenaModel
from nlparena.models.checkpoint_file import write_checkpoints_atomically

__all__ = ["NlpArenaCLI", "subclasses"]

ARGS_WARNING = "LightningCLI's args parameter is intended to run from within Python"


def default_callbacks() -> list[Callback]:
    """The callbacks every command's Trainer has, after the config's own: the lr of every step, the figures, the stop
    at a non-finite loss (exit status 1, no checkpoint of a diverged model), the random states in checkpoints and
    every test example's output (`test_outputs.csv`)."""
    return [
        StepLearningRateMonitor(),
        AttentionMaps(),
        ConfusionMatrices(),
        NonFiniteGuard(),
        RandomState(),
        TestOutputs(),
    ]


class NlpArenaCLI(LightningCLI):
    """`nlparena fit|validate|test|predict`; every constructor argument is a config key.

    `nlparena translate`, `schedule` and `compare` are handled before this class is reached.
    """

    # with run=False: keep the start-up lines held back after __init__, for a caller that runs through `run_checked`
    hold_until_run: ClassVar[bool] = False

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": False})
        kwargs.setdefault("save_config_callback", HParamsSession)  # config.yaml, and the run's row in HPARAMS
        self.checkpoint: dict[str, Any] | None = None  # what --ckpt_path holds, until checked against the model
        # Help shows the one-line docstring under each field of a network config (TransformerConfig, ...). Finding
        # them parses the classes' source, 0.7 s of every command on 2 CPU cores: only when help is printed.
        set_parsing_settings(docstring_parse_attribute_docstrings=asks_for_help(sys.argv[1:] if args is None else args))
        silence_foreign_lines()  # adverts and warnings that no user can act on; before the filters are saved
        # Lightning's start-up lines and warnings wait until every check has passed: a bad input prints one line
        self.held_back = HeldBackOutput()
        self.held_back.start()  # saves the warning filters, restored when the held-back lines are printed
        # `main` and the subcommands hand their arguments over explicitly while sys.argv holds the same
        warnings.filterwarnings("ignore", message=ARGS_WARNING)
        try:
            super().__init__(
                model_class=ArenaModel,
                datamodule_class=LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                trainer_defaults={"callbacks": default_callbacks()},
                parser_class=NlpArenaParser,
                args=args,
                run=run,
                **kwargs,
            )
        except BaseException as err:
            self.held_back.end(err)
            raise
        if not self.hold_until_run:
            self.held_back.end(None)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """LightningCLI's parser, whose `-c FILE` refuses a file that is not one in one line naming it."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ConfigFile, help="Path to a configuration file in YAML format.")
        return parser

    def setup_parser(self, *args: Any, **kwargs: Any) -> None:
        """LightningCLI's, with our description of each subcommand in `--help` (cli/commands.py)."""
        super().setup_parser(*args, **kwargs)
        self.parser.describe_commands()

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """LightningCLI's, after checking the class names of `--model` and `--data` against the classes we know; a
        `test|validate|predict --ckpt_path` with no settings takes its run's config (`with_run_config`)."""
        if isinstance(args, list):
            args = with_run_config(args)
            NlpArenaParser.check_command_line(args)
        super().parse_arguments(parser, args)

    def settings(self, config: Namespace) -> Namespace:
        """The part of `config` (or of `config_init`) for the subcommand being run; all of it with `run=False`."""
        return config.get(str(self.subcommand), config)

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
        parser.add_argument(
            "--threads",
            type=int | Literal["auto"] | None,
            default=None,
            help="torch's intra-op CPU threads for this run: a number, auto (the cores other processes leave idle), "
            "or null (torch's default: OMP_NUM_THREADS or every core)",
        )
        parser.set_defaults(
            {
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3}},
                "progress_bar.refresh_rate": 20,
                "trainer.logger": {
                    "class_path": "nlparena.cli.logger.RunFolderLogger",
                    "init_args": {"save_dir": "logs", "name": None, "default_hp_metric": False},
                },
            }
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer of the config with LightningCLI's callbacks (the config's callback keys, `trainer_defaults`, the
        config saver), the progress bar left out when `trainer.enable_progress_bar` is false (Lightning refuses a
        progress bar callback then); a value Lightning refuses is one line naming its key."""
        config = {**self.settings(self.config_init).get("trainer", {}), **kwargs}
        parser = self.parser.subcommand_parser(self.subcommand)
        forced = [self.settings(self.config_init).get(key) for key in parser.callback_keys]
        if config.get("enable_progress_bar") is False:
            forced = [callback for callback in forced if not isinstance(callback, ProgressBar)]
        check_trainer_settings(config)
        defaults = _as_list(self.trainer_defaults.get("callbacks"))
        config["callbacks"] = [*_as_list(config.get("callbacks")), *forced, *defaults]
        config["callbacks"] += self.own_callbacks(config)
        if self.save_config_callback and not config.get("fast_dev_run", False):
            saver = self.save_config_callback(parser, self.settings(self.config), **self.save_config_kwargs)
            config["callbacks"].append(saver)
        try:
            return write_checkpoints_atomically(self.trainer_class(**config))
        except REFUSALS as err:
            if config_error_in(err):
                raise
            raise trainer_refusal(err, self.trainer_class, config) from None

    def own_callbacks(self, config: dict[str, Any]) -> list[Callback]:
        """nlparena's model summary (the network's modules) in place of Lightning's, and the model's checkpoints
        (`checkpoint_callbacks`), given to the Trainer so that Lightning neither adds a default ModelCheckpoint nor
        says that `configure_callbacks` replaced it (a test has them too: their states in the checkpoint are theirs).
        `config` is the Trainer's arguments; the config's own summary and checkpoint callbacks are left as they are."""
        if config.get("barebones"):
            return []
        callbacks, added = config["callbacks"], []
        if config.get("enable_model_summary") is not False and not any(isinstance(c, ModelSummary) for c in callbacks):
            config["enable_model_summary"] = False  # Lightning adds its own summary otherwise
            added.append(NetworkSummary())
        if any(isinstance(c, Checkpoint) for c in callbacks) or config.get("enable_checkpointing") is False:
            return added
        if isinstance(self.model, ArenaModel):
            added += self.model.checkpoint_callbacks()
        return added

    def after_fit(self) -> None:
        """End `nlparena fit` with where it went, its best validation value and checkpoint, and how to use it."""
        if self.trainer.is_global_zero:
            _say(fit_summary(self.trainer, self.model))

    def after_test(self) -> None:
        """End `nlparena test` with the checkpoint it tested, its run, and the test's own log folder."""
        if self.trainer.is_global_zero:
            _say(tested_summary(self.trainer, self.settings(self.config).get("ckpt_path")))

    def _parse_ckpt_path(self) -> None:
        """Read `--ckpt_path` (required by validate, test and predict) and merge its model settings into the config
        (see `cli/checkpoints.py`); replaces LightningCLI's merge, in which the checkpoint's settings won silently."""
        subcommand = self.config.get("subcommand")
        if subcommand:
            self.checkpoint = read_run_checkpoint(subcommand, self.config[subcommand], subclasses(ArenaModel))

    def instantiate_classes(self) -> None:
        """LightningCLI's, with what torch and Lightning refuse while building the model, the data, the optimizer,
        the scheduler or the Trainer as one line naming the key; the optimizer and scheduler are built once here on
        the model's parameters (built again for `configure_optimizers`)."""
        try:
            self.config_init = self.parser.instantiate(self.config)
        except (*REFUSALS, RuntimeError) as err:
            if config_error_in(err):
                raise
            raise build_error(err, self.parser, self.config) from None
        built = self.settings(self.config_init)
        self.datamodule, self.model = built.get("data"), built.get("model")
        check_data_decided(self.typed_sizes, self.datamodule)
        check_optimizer(self.model, built.get("optimizer"), built.get("lr_scheduler"))
        self.attach_optimizers()
        self.trainer = self.instantiate_trainer()

    def attach_optimizers(self) -> None:
        """The model's `configure_optimizers` returns the config's optimizer and scheduler through this CLI's
        `configure_optimizers`, as LightningCLI does for its automatic `optimizer` and `lr_scheduler` keys."""
        settings = self.settings(self.config_init)
        optimizer_init, scheduler_init = settings.get("optimizer"), settings.get("lr_scheduler")
        if not self.auto_configure_optimizers or not optimizer_init:
            return
        optimizer = instantiate_class(self.model.parameters(), optimizer_init)
        scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        configure = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=scheduler)
        update_wrapper(configure, self.configure_optimizers)  # Lightning's `is_overridden` looks for the wrapped one
        self.model.configure_optimizers = MethodType(configure, self.model)

    def _run_subcommand(self, subcommand: str) -> None:
        """Check what the run needs (`check_run_can_start`), then run, with the start-up lines held back until the
        work starts (`ReleaseAtStart`); a run that fails before it trained or logged anything leaves no run folder."""
        self.check_run_can_start()
        self.run_checked(lambda: super(NlpArenaCLI, self)._run_subcommand(subcommand))

    def check_run_can_start(self) -> None:
        """What a run checks when it starts, each a ConfigError line: the log folder can be written, the checkpoint
        of `--ckpt_path` fits the model, and, when fitting, every monitored metric is one the model logs. A CLI built
        with run=False is taken to be fitted (as `nlparena compare` fits each trial)."""
        fitting = self.subcommand in (None, "fit")
        check_save_dirs(self.trainer)
        built = self.settings(self.config_init)
        if self.checkpoint is not None:
            path = self.settings(self.config).ckpt_path
            check_checkpoint_fits(self.checkpoint, path, self.model, self.datamodule)
            if fitting:
                check_optimizer_state(self.checkpoint, path, self.model, built.get("optimizer"))
            self.checkpoint = None
        if fitting:
            check_monitors(self.trainer, self.model, built.get("lr_scheduler"))

    def run_checked(self, work: Callable[[], Any]) -> Any:
        """`work()` (a Trainer's fit, test, ...) with the start-up lines held back until the work starts
        (`ReleaseAtStart`), so that a bad setting found while the run is set up is one line, and no run folder is left
        if it fails before it trained or logged anything."""
        release = ReleaseAtStart(self.held_back)
        self.trainer.callbacks.append(release)
        try:
            with no_folder_left_on_error(self.trainer):
                result = work()
        except BaseException as err:
            name_unnamed_write(err, self.trainer.log_dir)  # a full disk: the run folder, if the write named no file
            path = self.settings(self.config).get("ckpt_path")
            refused = None if release.set_up else setup_error(err, path, lambda: load_refusal(path, self.model))
            self.held_back.end(refused or err)
            if refused is not None:
                raise refused from None
            raise
        self.held_back.release()
        return result

    def configure_optimizers(
        self, lightning_module: LightningModule, optimizer: Optimizer, lr_scheduler: LRSchedulerTypeUnion | None = None
    ) -> Any:
        """The optimizer and scheduler of the config; the scheduler steps per `lr_scheduler_interval`."""
        if lr_scheduler is None:
            return optimizer
        scheduler: dict[str, Any] = {
            "scheduler": lr_scheduler,
            "interval": self.settings(self.config).get("lr_scheduler_interval"),
        }
        if isinstance(lr_scheduler, ReduceLROnPlateau):
            scheduler["monitor"] = lr_scheduler.monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def before_instantiate_classes(self) -> None:
        """Check that model and data belong to the same family; give text data the tokenizer the weights were trained
        with; build a TensorBoardLogger as RunFolderLogger (its version folder claimed atomically); name an unnamed
        TensorBoard run `<data>/<model>`."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        set_threads(config.get("threads"))
        model_class = subclasses(ArenaModel).get(config.model.class_path)
        data_class = subclasses(LightningDataModule).get(config.data.class_path)
        self.typed_sizes = typed_sizes(model_class, config.model.init_args)
        family, data_family = getattr(model_class, "family", None), getattr(data_class, "family", None)
        if family and data_family and family != data_family:
            raise ConfigError(
                f"--model {model_class.__name__} trains on {family} data but --data {data_class.__name__} is "
                f"{data_family} data; choose --data from {', '.join(choices(LightningDataModule, family))}"
            )
        give_data_the_tokenizer_of_weights(config, self.checkpoint)  # before the data trains a tokenizer of its own
        logger = config.trainer.logger
        if isinstance(logger, Namespace) and logger.class_path in TENSORBOARD_LOGGERS:
            logger.class_path = f"{RunFolderLogger.__module__}.{RunFolderLogger.__name__}"  # same arguments
        tensorboard = isinstance(logger, Namespace) and logger.class_path.endswith(
            ("TensorBoardLogger", "RunFolderLogger")
        )
        if tensorboard and logger.init_args.name is None:
            data, model = (config[key].class_path.rsplit(".", 1)[-1] for key in ("data", "model"))
            logger.init_args.name = f"{data}/{model}"


def _say(lines: list[str]) -> None:
    """nlparena's own lines about a run, on stdout."""
    for line in lines:
        print(line, flush=True)


def _as_list(value: Any) -> list[Any]:
    """A Trainer's `callbacks` as a list: none, one or several."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
