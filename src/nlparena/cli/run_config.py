"""`nlparena test|validate|predict --ckpt_path RUN/checkpoints/X.ckpt` with no config: the settings of the run that
wrote the checkpoint, from the `config.yaml` Lightning saved in RUN, as if `-c RUN/config.yaml` had been given first;
anything on the command line overrides them."""

from __future__ import annotations

from pathlib import Path

import yaml

from nlparena.cli.keys import NOT_GIVEN, given_on_command_line
from nlparena.cli.summaries import run_of_checkpoint
from nlparena.errors import ConfigError
from nlparena.models.checkpoint_file import read_checkpoint

EVALUATING = ("validate", "test", "predict")
RUN_CONFIG = "config.yaml"  # LightningCLI's SaveConfigCallback writes it in the run folder
SETTINGS_GIVEN = {"config", "model", "data", "help"}  # the settings come from there, not from the run (or help)


def with_run_config(args: list[str]) -> list[str]:
    """`args` (`test --ckpt_path X ...`) with `-c RUN/config.yaml` after the subcommand when it evaluates a
    checkpoint and gives neither a config nor `--model`/`--data`; `args` unchanged otherwise. The run's logger keeps
    its save_dir and name, but never its version: the evaluation logs to a new version folder and the run's own
    files are never written to (a run of `nlparena compare` names its version)."""
    if not args or args[0] not in EVALUATING:
        return args
    rest = args[1:]
    given = dict(given_on_command_line(rest).items)  # the last value of a key given twice
    path = given.get("ckpt_path", NOT_GIVEN)
    short = any(arg == "-h" or arg == "-c" or arg.startswith("-c=") for arg in rest)  # `-c`, `-h`: no `--key`
    if path is NOT_GIVEN or SETTINGS_GIVEN & given.keys() or short:
        return args
    what = f"--ckpt_path {path}"
    if not Path(path).is_file():
        read_checkpoint(path, what)  # its one line: no such file, a folder, ...
    run = run_of_checkpoint(path)
    config = run / RUN_CONFIG if run is not None else None
    if config is None or not config.is_file():
        where = f"no {config}" if config is not None else "not in a run's checkpoints/ folder"
        raise ConfigError(
            f"{what}: {where}, the config of the run that wrote it; give the settings with -c CONFIG (or --model and "
            "--data)"
        )
    extra = ["-c", str(config)]
    if _logger_version(config) is not None:
        extra.append("--trainer.logger.init_args.version=null")
    return [args[0], *extra, *rest]


def _logger_version(config: Path) -> object:
    """The version folder the run's config names for its logger (None: the logger picks the next one)."""
    try:
        saved = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None  # the config's own error comes from the parser, naming the file
    logger = (saved.get("trainer") or {}).get("logger") if isinstance(saved, dict) else None
    init_args = logger.get("init_args") if isinstance(logger, dict) else None
    return init_args.get("version") if isinstance(init_args, dict) else None
