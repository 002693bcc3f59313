"""The TensorBoard logger of every `nlparena` run: Lightning's, with its version folder claimed atomically; and the
run's row in TensorBoard's HPARAMS tab, written from the run's config."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from google.protobuf.struct_pb2 import Value
from jsonargparse import Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.api_pb2 import Status
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
from torch.utils.tensorboard.writer import FileWriter

from nlparena.cli.summaries import run_of_checkpoint
from nlparena.events import read_events
from nlparena.models.base import flatten

# how a config names Lightning's TensorBoardLogger; NlpArenaCLI builds RunFolderLogger instead, with the same arguments
TENSORBOARD_LOGGERS = (
    "lightning.pytorch.loggers.TensorBoardLogger",
    "lightning.pytorch.loggers.tensorboard.TensorBoardLogger",
)
# the config's sections that are HPARAMS columns beside the model's hyperparameters, and the trainer's settings among
# them: those that change what is trained (devices, logging and progress settings do not)
CONFIG_SETTINGS = ("data", "optimizer", "lr_scheduler", "lr_scheduler_interval", "seed_everything")
TRAINER_SETTINGS = (
    "max_epochs",
    "max_steps",
    "max_time",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "precision",
    "callbacks",
)
# the settings that decide a test's result (with the checkpoint): a test whose values of them equal the tested run's
# joins the run's HPARAMS row
TEST_SETTINGS = ("model", "data")


class RunFolderLogger(TensorBoardLogger):
    """TensorBoardLogger whose next `version_N` folder is claimed with `mkdir` (atomic: it fails if the folder
    exists) instead of being picked from a folder listing and made at the first write, so two runs started
    together never share a folder: the second takes the next number.

    Only the global-zero process claims; the others never write (TensorBoardLogger writes on rank 0 only) and read
    the run folder through the Trainer, which broadcasts rank 0's. A version given explicitly is used as it is.
    """

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0:
            return version
        root = Path(self.root_dir)
        root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                (root / f"version_{version}").mkdir()
            except FileExistsError:
                version += 1
            else:
                return version


TOKENIZER_FILE = "tokenizer.json"  # the data's tokenizer, in the run folder beside config.yaml


class HParamsSession(SaveConfigCallback):
    """LightningCLI's `config.yaml` in the run folder, and the run's row in TensorBoard's HPARAMS tab: a session
    (start info at setup, end info with the status at the end) holding the run's settings (`run_settings`).

    No run writes an experiment summary (the list of columns): TensorBoard takes the first one it finds for the
    whole log folder, which hid every other model family's columns and metrics. Without one it builds the columns
    from every session, the union of all runs' settings, and the metrics from every scalar the session runs logged,
    so every headline metric (`val/exact_match`, `test/macro_f1`, ...) is a column with its last logged value.

    A test writes its own `version_N` folder, like any run (a finished run's folder is never written to again, and a
    test of a checkpoint while its run still trains cannot mix into that run's events). Its session joins the tested
    run's row (the same `group_name`, whose metrics TensorBoard averages over the row's sessions: the fit gives the
    `val/*` values, the test the `test/*` ones) when the test's model and data settings equal the run's; a test with
    other ones (`--model.decode beam`) is a row of its own, showing them. Its training settings are the tested run's.
    Sessions are written by `fit` and `test` only, on the global-zero process; a test in the fitting process (as in
    `nlparena compare`) logs into the fit's folder and session.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_stage: str | None = None  # the stage whose session is open, on the global-zero process

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """LightningCLI's (config.yaml, then `save_config`), and beside config.yaml the data's tokenizer as
        `tokenizer.json` when it has one (users' text), on the global-zero process."""
        saving = self.save_to_log_dir and not self.already_saved
        log_dir = trainer.log_dir if saving else None  # on every process: Lightning broadcasts it from process 0
        super().setup(trainer, pl_module, stage)
        vocab = getattr(trainer.datamodule, "vocab", None)
        tokenizer = vocab.to_json() if vocab is not None else None
        if log_dir is not None and tokenizer is not None and trainer.is_global_zero:
            Path(log_dir, TOKENIZER_FILE).write_text(tokenizer)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        logger = trainer.logger
        if stage not in ("fit", "test") or not isinstance(logger, TensorBoardLogger):
            return
        session = SessionStartInfo(group_name=str(Path(logger.log_dir).resolve()), start_time_secs=time.time())
        for key, value in run_settings(self.config, pl_module).items():
            session.hparams[key].CopyFrom(value)
        if stage == "test":
            session = tested_run_session(self.config.get("ckpt_path"), session)  # the Trainer reads it after setup
        write_hparams_summary(logger, metadata.SESSION_START_INFO_TAG, HParamsPluginData(session_start_info=session))
        self._session_stage = stage

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_session(trainer, "fit", Status.STATUS_SUCCESS)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end_session(trainer, "test", Status.STATUS_SUCCESS)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_session(trainer, self._session_stage, Status.STATUS_FAILURE)

    def _end_session(self, trainer: pl.Trainer, stage: str | None, status: int) -> None:
        """The end info of the session this stage started (a test after a fit in one process adds none)."""
        if stage is None or stage != self._session_stage:
            return
        self._session_stage = None
        end = SessionEndInfo(status=status, end_time_secs=time.time())
        write_hparams_summary(trainer.logger, metadata.SESSION_END_INFO_TAG, HParamsPluginData(session_end_info=end))


def run_settings(config: Namespace, model: pl.LightningModule) -> dict[str, Value]:
    """A run's HPARAMS columns: `model` (its class) and `model.*` (its hyperparameters: its constructor arguments,
    the sizes the data decides included), then from the config `data`, `data.*`, `optimizer`, `optimizer.*`
    (`optimizer.lr`), `lr_scheduler`, `lr_scheduler.*`, `lr_scheduler_interval`, `seed_everything` and the trainer's
    settings that change what is trained (`trainer.max_epochs`, `trainer.callbacks.Warmup.epochs`, ...). None is left
    out."""
    raw = config.as_dict()
    trainer = raw.get("trainer") or {}
    hparams = {key: value for key, value in model.hparams.items() if not key.startswith("_")}
    settings = {
        "model": type(model).__name__,
        **flatten(hparams, "model."),
        **config_settings({key: raw.get(key) for key in CONFIG_SETTINGS}),
        **config_settings({key: trainer.get(key) for key in TRAINER_SETTINGS}, "trainer."),
    }
    return {key: hparam_value(value) for key, value in settings.items() if value is not None}


def config_settings(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Config values as dotted keys, without `init_args`: a class given by `class_path` is its class name under its
    key (`optimizer: AdamW`) and its arguments under the key (`optimizer.lr`); a list of classes (`trainer.callbacks`)
    one key per class (`trainer.callbacks.Warmup.epochs`)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        classes = value if isinstance(value, list) and value and all(map(is_class, value)) else None
        if classes is not None:
            flat.update(config_settings({class_name(item): item for item in classes}, f"{prefix}{key}."))
        elif is_class(value):
            flat[f"{prefix}{key}"] = class_name(value)
            flat.update(config_settings(value.get("init_args") or {}, f"{prefix}{key}."))
        elif isinstance(value, dict):
            flat.update(config_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_class(value: Any) -> bool:
    """A class given in a config (`{class_path: ..., init_args: {...}}`)."""
    return isinstance(value, dict) and "class_path" in value


def class_name(value: dict[str, Any]) -> str:
    return value["class_path"].rsplit(".", 1)[-1]


def hparam_value(value: Any) -> Value:
    """A setting as the HPARAMS plugin stores it: a bool, a number, or else a string (`[3, 10]`)."""
    if isinstance(value, bool):
        return Value(bool_value=value)
    if isinstance(value, (int, float)):
        return Value(number_value=value)
    return Value(string_value=value if isinstance(value, str) else str(value))


def tested_run_session(ckpt_path: str | None, session: SessionStartInfo) -> SessionStartInfo:
    """The session of a test of `ckpt_path`: in the row of the run that wrote the checkpoint
    (`<run>/checkpoints/X.ckpt`) if the test's model and data settings equal the run's, with the run's training
    settings; `session` (its own row) if the checkpoint is not in a run folder with a session."""
    run = run_of_checkpoint(ckpt_path) if ckpt_path else None
    content = read_events(run).hparams.get(metadata.SESSION_START_INFO_TAG) if run is not None else None
    if content is None:
        return session
    tested = metadata.parse_session_start_info_plugin_data(content)

    def decides_the_test(key: str) -> bool:
        return key.split(".", 1)[0] in TEST_SETTINGS

    own = {key: value for key, value in session.hparams.items() if decides_the_test(key)}
    same = own == {key: value for key, value in tested.hparams.items() if decides_the_test(key)}
    result = SessionStartInfo(
        group_name=tested.group_name if same and tested.group_name else session.group_name,
        start_time_secs=session.start_time_secs,
    )
    for key, value in tested.hparams.items():
        if not decides_the_test(key):
            result.hparams[key].CopyFrom(value)
    for key, value in own.items():
        result.hparams[key].CopyFrom(value)
    return result


def write_hparams_summary(logger: TensorBoardLogger, tag: str, content: HParamsPluginData) -> None:
    """One record of the HPARAMS plugin (a summary with no value: the content is in its metadata), written as
    torch's `SummaryWriter.add_hparams` writes its own: through the writer's `file_writer`. A writer closed at the
    end of fit has none: the record goes to a new events file in the run's folder, as the writer's next write would."""
    summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])
    experiment = logger.experiment
    if experiment.file_writer is not None:
        experiment.file_writer.add_summary(summary)
        return
    writer = FileWriter(experiment.get_logdir())
    writer.add_summary(summary)
    writer.close()
