"""A compare config file (`configs/compare/*.yaml`) as jsonargparse reads it: what each key may hold, as dataclasses,
with the rules that span keys in their `__post_init__`; every error is one ConfigError line naming the file and key."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeInt, Path_fr, restricted_string_type

from nlparena.cli.parser import NlpArenaParser
from nlparena.compare.search_config import RunSearchEntry, SearchEntry
from nlparena.compare.values import CONFIG_KEY, cli_value
from nlparena.errors import ConfigError, config_error_in, read_yaml

PRETRAINED = "{pretraining}"  # in a run's args: the checkpoint of the `pretraining` run of the same seed


# -- the compare config: what a YAML file may hold, as dataclasses that jsonargparse checks -----------------------

# a folder name on every system: no '..', no '/'
FolderName = restricted_string_type("FolderName", r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_values(grid: dict[str, list[Any]], key: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """A curve (config key -> values) as (key without `--`, values) pairs; each list non-empty and without
    repeats, else a ConfigError naming `key` (jsonargparse checks a mapping's values, not its keys)."""
    for name, values in grid.items():
        if not CONFIG_KEY.fullmatch(name):
            raise ConfigError(f"{key}.{name}: must be a config key such as optimizer.init_args.lr")
        if not values or len({cli_value(v) for v in values}) != len(values):
            raise ConfigError(f"{key}.{name}={values!r}: must be a non-empty list of values, none repeated")
    return tuple((name.removeprefix("--"), tuple(values)) for name, values in grid.items())


def refuse_sweep(sweep: Any, where: str) -> None:
    """`sweep:` is a grid search now: one line that says how to write it."""
    if sweep is not None:
        raise ConfigError(
            f"{where}sweep: replaced by search:; write the grid as "
            "`search: {sampler: grid, space: {KEY: [VALUE, ...]}}` at the top, a run's own values as its "
            "`search: {space: {KEY: [VALUE, ...]}}` (each run keeps its best setting by validation, then trains "
            "with the seeds)"
        )


def check_seeds(seeds: list[int], key: str) -> tuple[int, ...]:
    """Seeds (each already a whole number >= 0) as a tuple; a ConfigError naming `key` if none or one repeats."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{key}={list(seeds)!r}: must be a non-empty list of distinct whole numbers, e.g. [0, 1, 2]")
    return tuple(seeds)


@dataclass
class SharedEntry:
    """`shared`: the configs and args every run is given first (not the pretraining run)."""

    configs: list[Path_fr] = field(default_factory=list)  # relative to the current folder
    args: list[str] = field(default_factory=list)


@dataclass
class RunEntry:
    """An entry of `runs`: its name (its log folder), what `nlparena fit` is given on top of `shared`, its own search
    space on top of the shared `search`, and the run it is judged against (else the comparison's `baseline`)."""

    name: FolderName
    configs: list[Path_fr] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    search: RunSearchEntry | None = None
    baseline: str | None = None
    sweep: Any = None  # replaced by `search`: refused with how to write it

    def __post_init__(self) -> None:
        refuse_sweep(self.sweep, f"runs ({self.name}).")


@dataclass
class PretrainingEntry:
    """`pretraining`: run once per seed before the runs, with its own configs and args (not the shared ones)."""

    name: FolderName = "pretraining"
    configs: list[Path_fr] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


@dataclass
class CompareConfig:
    """A compare config as its YAML file gives it; the rules that span keys are checked in `__post_init__`."""

    runs: list[RunEntry]
    name: FolderName | None = None  # default: the file's name without .yaml
    shared: SharedEntry = field(default_factory=SharedEntry)
    target: float | None = None  # the headline metric to reach (the report counts the steps to it)
    stop_at_target: bool = False  # each trial stops at the first validation that reaches `target`
    seeds: list[NonNegativeInt] | None = None  # None: the seed the configs give
    baseline: str | None = None
    search: SearchEntry | None = None  # tune every run with the same budget (see search_config.py)
    sweep: Any = None  # replaced by `search`: refused with how to write it
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit's executor parameters for `--executor slurm`
    pretraining: PretrainingEntry | None = None
    curve: dict[str, list[Any]] | None = None  # one config key: every run at every value

    def __post_init__(self) -> None:
        if not self.runs:
            raise ConfigError("runs=[]: must be a non-empty list of runs (each with name, configs, args)")
        names = [run.name for run in self.runs]
        for i, run in enumerate(self.runs):
            if run.name in names[:i]:
                raise ConfigError(
                    f"runs[{i}].name={run.name!r}: duplicate run name (also runs[{names.index(run.name)}]); "
                    "names must differ"
                )
            self._check_baseline(run.baseline, f"runs[{i}].baseline", names)
            if self.pretraining is None and any(PRETRAINED in arg for arg in run.args):
                raise ConfigError(
                    f"runs[{i}].args: {PRETRAINED} names the pretraining checkpoint, but this comparison has no "
                    "`pretraining` run"
                )
        self._check_baseline(self.baseline, "baseline", names)
        if self.pretraining is not None and self.pretraining.name in names:
            raise ConfigError(f"pretraining.name={self.pretraining.name!r}: also the name of a run; names must differ")
        if self.seeds is not None:
            check_seeds(self.seeds, "seeds")
        refuse_sweep(self.sweep, "")
        if self.search is None and any(run.search for run in self.runs):
            named = next(run.name for run in self.runs if run.search)
            raise ConfigError(f"runs ({named}).search: a run's space needs the comparison's search: (trials, sampler)")
        if self.curve is not None and len(self.curve) != 1:
            raise ConfigError(f"curve={self.curve!r}: must name one config key, e.g. {{data.train_size: [50, 200]}}")
        check_values(self.curve or {}, "curve")
        if self.stop_at_target and self.target is None:
            raise ConfigError("stop_at_target: true needs target: (the headline metric's value each trial stops at)")

    @staticmethod
    def _check_baseline(baseline: str | None, key: str, names: list[str]) -> None:
        if baseline is not None and baseline not in names:
            raise ConfigError(f"{key}={baseline!r}: not a run of this comparison; choose one of {', '.join(names)}")


class CompareConfigParser(NlpArenaParser):
    """The CLI's parser (one line naming the key) for a compare config. The parsers jsonargparse makes for the
    entries of `runs` (it makes them with exit_on_error=False) raise jsonargparse's own error, so that the top
    parser's one line also says which key held the entry."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            ArgumentParser.error(self, message, ex)
        super().error(message, ex)


def read_compare_config(path: Path) -> CompareConfig:
    """The compare config in `path` as a CompareConfig, checked by jsonargparse against its dataclasses (unknown keys,
    types, files that do not exist) and by their `__post_init__`; every error is one ConfigError line naming the
    file and the key."""
    content = read_yaml(path, "--config")  # one line if missing, a folder, not YAML, or repeating a key
    try:
        if not isinstance(content, dict):
            raise ConfigError(f"must be a mapping of keys (runs:, shared:, seeds:, ...); got {content!r}")
        return CompareConfig(**vars(parsed_as(CompareConfig, content)))
    except Exception as err:
        cause = config_error_in(err)
        if cause is None:
            raise
    # outside the handler: a refusal of one entry must not carry the whole config's error as its context
    raise ConfigError(f"{path}: {entry_error(content) or cause}") from None


def parsed_as(config_class: type, content: dict[str, Any]) -> Any:
    """`content` parsed and instantiated by jsonargparse as `config_class` (a dataclass of this module); `content`
    is left as it was (jsonargparse turns the entries of a list into Namespaces in place)."""
    parser = CompareConfigParser(prog="nlparena compare", default_env=False)
    parser.add_class_arguments(config_class)
    return parser.instantiate(parser.parse_object(copy.deepcopy(content)))


def entry_error(content: Any) -> ConfigError | None:
    """The error of the first entry of `runs` that is refused on its own, named `runs[i]`: jsonargparse names only
    the list (`Parser key "runs": Problem with given class_path ...`) when one of its entries is refused."""
    runs = content.get("runs") if isinstance(content, dict) else None
    for i, entry in enumerate(runs if isinstance(runs, list) else []):
        if not isinstance(entry, dict):
            return ConfigError(f"runs[{i}]={entry!r}: must be a mapping (name:, configs:, args:, ...)")
        try:
            parsed_as(RunEntry, entry)
        except Exception as err:
            cause = config_error_in(err)
            if cause is None:
                raise
            return ConfigError(f"runs[{i}]: {cause}")
    return None


def paths(files: list[Path_fr]) -> tuple[str, ...]:
    """Config files as the user gave them (relative to the current folder)."""
    return tuple(str(file) for file in files)
