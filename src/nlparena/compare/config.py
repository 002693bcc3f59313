"""A comparison as its config defines it (runs, trials, their log folders and records), and what identifies one
run's settings; the file itself is read and checked in `config_file.py`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nlparena.compare.config_file import PRETRAINED, check_values, paths, read_compare_config
from nlparena.compare.search_config import SEARCH_SEEDS, Search, Space, check_space
from nlparena.compare.values import cli_value
from nlparena.errors import ConfigError

MARKER = "compare.json"  # written last into a run's version folder: the run finished (or failed)


def config_paths(args: list[str]) -> list[str]:
    """The config files that `nlparena fit` args name (`-c PATH`, `--config PATH`, `--config=PATH`)."""
    paths = []
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            paths.append(args[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.removeprefix("--config="))
    return paths


def run_settings(args: list[str], stop_at: float | None = None) -> dict[str, Any]:
    """What a run was given: its `nlparena fit` args and a digest of each config file they name, and the target it
    stops at (if it does), so that a finished run counts as done only while none of them has changed."""
    digests = {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in config_paths(args)}
    stop = {"stop_at_target": stop_at} if stop_at is not None else {}
    return {"args": list(args), "config_sha256": digests, **stop}


def seed_of(args: list[str]) -> int | None:
    """The `--seed_everything=N` that `nlparena fit` args end up with (the last one given), None if none is."""
    given = [arg.split("=", 1)[1] for arg in args if arg.startswith("--seed_everything=")]
    return int(given[-1]) if given and given[-1].lstrip("-").isdigit() else None


def logger_args(save_dir: str, name: str, version: int) -> list[str]:
    """Overrides that send a run's TensorBoard logs to `save_dir/name/version_N` (one parent folder for a
    comparison, so TensorBoard shows its runs side by side), whatever logger its configs chose."""
    return [
        "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--trainer.logger.init_args.name={name}",
        f"--trainer.logger.init_args.version={version}",
        "--trainer.logger.init_args.default_hp_metric=false",
    ]


TRIAL_LOG = "trial.log"  # a trial's stdout and stderr, in its version folder
ERROR_LINES = 20  # of a failed run's log, kept in its compare.json
ERROR_CHARS = 300  # of its last line, shown in the terminal and the report (exception messages can be long)


@dataclass(frozen=True)
class Run:
    """One entry of `runs`: a name (its log folder), what `nlparena fit` is given on top of `shared`, and its own
    search space (on top of the shared `search`'s). With a `curve`, one Run per entry and
    value of the curve's key: `line` is the entry's name and `point` the value; `baseline` is the run it is judged
    against (the entry's own `baseline`, else the comparison's; at the same point of the curve)."""

    name: str
    configs: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    space: Space = ()
    baseline: str | None = None
    line: str = ""
    point: Any = None

    @property
    def line_name(self) -> str:
        return self.line or self.name

    @property
    def baseline_line(self) -> str | None:
        """The entry name of this run's baseline (`scratch` for `scratch/train_size=50` along a curve)."""
        return self.baseline.rsplit("/", 1)[0] if self.point is not None and self.baseline else self.baseline


@dataclass(frozen=True)
class Trial:
    """One process of a comparison: a run, its setting (the values its search chose, or a search trial's) and one
    seed. A search trial has its number in the run's study."""

    run: Run
    seed: int | None = None  # None: the seed its configs give (a comparison without `seeds`)
    setting: tuple[tuple[str, Any], ...] = ()
    search_number: int | None = None

    @staticmethod
    def searching(run: Run, number: int, setting: tuple[tuple[str, Any], ...]) -> Trial:
        """Trial `number` of a run's search: its own seed, never one of the comparison's."""
        return Trial(run, SEARCH_SEEDS + number, setting, number)

    @property
    def setting_name(self) -> str:
        """`lr=0.001,batch_size=64` (the last part of each key), '' without a setting; a folder name."""
        return ",".join(point_name(key, value) for key, value in self.setting)

    @property
    def folder(self) -> Path:
        """Relative to the comparison's log folder: `run[/setting][/seed_S]`, the parent of its `version_N`; a search
        trial's is `run/search/trial_K`."""
        if self.search_number is not None:
            return Path(self.run.name, "search", f"trial_{self.search_number}")
        parts = [self.run.name, *([self.setting_name] if self.setting else [])]
        return Path(*parts, *([f"seed_{self.seed}"] if self.seed is not None else []))

    @property
    def label(self) -> str:
        """`bahdanau lr=0.001 seed 2` (`bahdanau search trial 3`), for the terminal and the report."""
        if self.search_number is not None:
            return f"{self.run.name} search trial {self.search_number}"
        parts = [self.run.name, self.setting_name, "" if self.seed is None else f"seed {self.seed}"]
        return " ".join(part for part in parts if part)

    def args(self) -> list[str]:
        """What this trial adds to its run's args: its setting's values, then the seed (last, so that it wins)."""
        args = [f"--{key}={cli_value(value)}" for key, value in self.setting]
        return args + ([f"--seed_everything={self.seed}"] if self.seed is not None else [])


@dataclass(frozen=True)
class Comparison:
    """A validated compare config."""

    source: Path
    name: str
    runs: tuple[Run, ...]
    shared_configs: tuple[str, ...] = ()
    shared_args: tuple[str, ...] = ()
    target: float | None = None
    stop_at_target: bool = False  # the runs' trials stop at the first validation that reaches `target`
    seeds: tuple[int | None, ...] = (None,)
    baseline: str | None = None
    search: Search | None = None
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit's executor parameters for `--executor slurm`
    pretraining: Run | None = None  # run once per seed before the runs; its checkpoint is their `{pretraining}`
    curve: tuple[str, tuple[Any, ...]] | None = None  # (config key, values): every run at every value
    # seed -> the checkpoint that `{pretraining}` stands for, filled in once the pretraining trials have run
    checkpoints: dict[int | None, str] = field(default_factory=dict)
    # run -> the setting its search chose (by validation), filled in once the search has run
    chosen: dict[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return Path("logs", "compare", self.name)

    def fit_args(self, trial: Trial, pretrained: str | None = None) -> list[str]:
        """What `nlparena fit` is given for a trial: shared configs, the run's configs, shared args, the run's args,
        the search's args (a search trial), the trial's setting and seed. `{pretraining}` in the run's args becomes
        `pretrained` if given, else the seed's pretraining checkpoint. The pretraining run itself gets its own
        configs and args only."""
        if trial.run is self.pretraining:
            return [*(f"--config={path}" for path in trial.run.configs), *trial.run.args, *trial.args()]
        configs = [f"--config={path}" for path in (*self.shared_configs, *trial.run.configs)]
        checkpoint = pretrained or self.checkpoints.get(trial.seed, f"(no finished pretraining of seed {trial.seed})")
        run_args = [arg.replace(PRETRAINED, checkpoint) for arg in trial.run.args]
        search_args = self.search.args if self.search and trial.search_number is not None else ()
        return [*configs, *self.shared_args, *run_args, *search_args, *trial.args()]

    def stop_at(self, trial: Trial) -> float | None:
        """The target a trial stops at (`stop_at_target`): a run's trial's; None for search and pretraining trials,
        which train their whole budget."""
        searching = trial.search_number is not None or trial.run is self.pretraining
        return self.target if self.stop_at_target and not searching else None

    def settings(self, trial: Trial) -> dict[str, Any]:
        """What a trial's `compare.json` records it ran with (`run_settings`): a finished trial with other settings
        is run again."""
        return run_settings(self.fit_args(trial), self.stop_at(trial))

    def pretraining_trials(self, seeds: tuple[int | None, ...] | None = None) -> list[Trial]:
        """The pretraining run's trial per seed; [] without one."""
        return [Trial(self.pretraining, seed) for seed in (seeds or self.seeds)] if self.pretraining else []

    def baselines(self) -> list[tuple[str, str]]:
        """(run, the run it is judged against) for every run that has a baseline other than itself."""
        return [(run.name, run.baseline) for run in self.runs if run.baseline and run.baseline != run.name]

    def space_of(self, run: Run) -> Space:
        """The run's search space (the shared one, with the run's own on top); () without a search."""
        return self.search.space_of(run.space, run.name) if self.search else ()

    def trials(self, seeds: tuple[int | None, ...] | None = None) -> list[Trial]:
        """Every run x seed, run by run, each run with the setting its search chose (none without a search)."""
        return [Trial(run, seed, self.chosen.get(run.name, ())) for run in self.runs for seed in (seeds or self.seeds)]


def next_version(trial_dir: Path) -> int:
    """One past the highest `version_N` (with or without a marker), as TensorBoardLogger would pick."""
    numbers = [int(p.name[8:]) for p in trial_dir.glob("version_*") if p.name[8:].isdigit()]
    return max(numbers, default=-1) + 1


@dataclass
class Record:
    """One attempt at a trial, as its `compare.json` says (or as the comparison saw it, for one never started)."""

    trial: Trial
    status: str  # "finished", "failed" or "not run"
    version_dir: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def run(self) -> str:
        return self.trial.run.name

    @property
    def version(self) -> int:
        return int(self.version_dir.name.removeprefix("version_")) if self.version_dir else -1


def point_name(key: str, value: Any) -> str:
    """`train_size=50`: a value's folder name (the last part of its key), for a curve's points and a search's
    settings."""
    return re.sub(r"[^A-Za-z0-9._=,-]", "_", f"{key.rsplit('.', 1)[-1]}={cli_value(value)}")


def along_curve(
    runs: tuple[Run, ...], curve: tuple[str, tuple[Any, ...]] | None, baseline: str | None
) -> tuple[Run, ...]:
    """Each run once per value of the curve (`run/train_size=50`, with `--data.train_size=50` last in its args), its
    baseline the same point of its baseline run; without a curve the runs as they are, with the comparison's
    baseline where they name none."""
    if curve is None:
        return tuple(replace(run, baseline=run.baseline or baseline) for run in runs)
    key, values = curve
    return tuple(
        replace(
            run,
            name=f"{run.name}/{point_name(key, value)}",
            args=(*run.args, f"--{key}={cli_value(value)}"),
            baseline=f"{base}/{point_name(key, value)}" if (base := run.baseline or baseline) else None,
            line=run.name,
            point=value,
        )
        for value in values
        for run in runs
    )


def own_space(search: Any) -> Space:
    """A run's own `search: {space: ...}`, checked; () without one."""
    return check_space(search.space, "search.space") if search is not None else ()


def load_comparison(path: Path) -> Comparison:
    """Read and check a compare config; every error is one ConfigError line naming the file and the key."""
    config = read_compare_config(path)
    entries = tuple(
        Run(run.name, paths(run.configs), tuple(run.args), own_space(run.search), run.baseline) for run in config.runs
    )
    pretraining = config.pretraining
    curve = check_values(config.curve, "curve")[0] if config.curve else None
    comparison = Comparison(
        source=path,
        name=config.name or path.stem,
        runs=along_curve(entries, curve, config.baseline),
        shared_configs=paths(config.shared.configs),
        shared_args=tuple(config.shared.args),
        target=config.target,
        stop_at_target=config.stop_at_target,
        seeds=(None,) if config.seeds is None else tuple(config.seeds),
        baseline=config.baseline,
        search=Search.of(config.search) if config.search else None,
        slurm=config.slurm,
        pretraining=pretraining and Run(pretraining.name, paths(pretraining.configs), tuple(pretraining.args)),
        curve=curve,
    )
    try:
        check_search(comparison)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return comparison


def check_search(comparison: Comparison) -> None:
    """Every run's space (none empty, no range for a grid), and seeds the search trials never use."""
    if comparison.search is None:
        return
    for run in comparison.runs:
        comparison.space_of(run)
    used = [seed for seed in comparison.seeds if seed is not None and seed >= SEARCH_SEEDS]
    if used:
        raise ConfigError(f"seeds={list(comparison.seeds)}: seeds from {SEARCH_SEEDS} on are the search trials' own")
