"""A compare config (`configs/compare/*.yaml`) read and checked, and what identifies one run's settings.

Every error is one ConfigError line naming the file and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nlparena.errors import ConfigError, read_yaml

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


def run_settings(args: list[str]) -> dict[str, Any]:
    """What a run was given: its `nlparena fit` args and a digest of each config file they name, so that a finished
    run counts as done only while neither has changed."""
    digests = {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in config_paths(args)}
    return {"args": list(args), "config_sha256": digests}


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


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a folder name on every system; no '..', no '/'
KEYS = {"name", "shared", "target", "runs", "seeds", "baseline", "sweep", "slurm", "pretraining", "curve"}
SHARED_KEYS = {"configs", "args"}
RUN_KEYS = {"name", "configs", "args", "sweep", "baseline"}
PRETRAINING_KEYS = {"name", "configs", "args"}
PRETRAINED = "{pretraining}"  # in a run's args: the checkpoint of the `pretraining` run of the same seed
SWEEP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")  # a config key: optimizer.init_args.lr
ERROR_LINES = 20  # of a failed run's stderr, kept in its compare.json
ERROR_CHARS = 300  # of its last line, shown in the terminal and the report (exception messages can be long)


@dataclass(frozen=True)
class Run:
    """One entry of `runs`: a name (its log folder), what `nlparena fit` is given on top of `shared`, and the
    values to sweep (config key -> values; on top of the shared `sweep`). With a `curve`, one Run per entry and
    value of the curve's key: `line` is the entry's name and `point` the value; `baseline` is the run it is judged
    against (the entry's own `baseline`, else the comparison's; at the same point of the curve)."""

    name: str
    configs: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
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


def cli_value(value: Any) -> str:
    """A YAML value as `nlparena fit` takes it after `--key=`: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Trial:
    """One process of a comparison: a run, one combination of its sweep values (its setting) and one seed."""

    run: Run
    seed: int | None = None  # None: the seed its configs give (a comparison without `seeds`)
    setting: tuple[tuple[str, Any], ...] = ()

    @property
    def setting_name(self) -> str:
        """`lr=0.001,batch_size=64` (the last part of each key), '' without a sweep; a folder name."""
        return ",".join(point_name(key, value) for key, value in self.setting)

    @property
    def folder(self) -> Path:
        """Relative to the comparison's log folder: `run[/setting][/seed_S]`, the parent of its `version_N`."""
        parts = [self.run.name, *([self.setting_name] if self.setting else [])]
        return Path(*parts, *([f"seed_{self.seed}"] if self.seed is not None else []))

    @property
    def label(self) -> str:
        """`bahdanau lr=0.001 seed 2`, for the terminal and the report."""
        parts = [self.run.name, self.setting_name, "" if self.seed is None else f"seed {self.seed}"]
        return " ".join(part for part in parts if part)

    def args(self) -> list[str]:
        """What this trial adds to its run's args: the sweep values, then the seed (last, so that it wins)."""
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
    seeds: tuple[int | None, ...] = (None,)
    baseline: str | None = None
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit's executor parameters for `--executor slurm`
    pretraining: Run | None = None  # run once per seed before the runs; its checkpoint is their `{pretraining}`
    curve: tuple[str, tuple[Any, ...]] | None = None  # (config key, values): every run at every value
    # seed -> the checkpoint that `{pretraining}` stands for, filled in once the pretraining trials have run
    checkpoints: dict[int | None, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return Path("logs", "compare", self.name)

    def fit_args(self, trial: Trial, pretrained: str | None = None) -> list[str]:
        """What `nlparena fit` is given for a trial: shared configs, the run's configs, shared args, the run's args,
        the trial's sweep values and seed. `{pretraining}` in the run's args becomes `pretrained` if given, else the
        seed's pretraining checkpoint. The pretraining run itself gets its own configs and args only."""
        if trial.run is self.pretraining:
            return [*(f"--config={path}" for path in trial.run.configs), *trial.run.args, *trial.args()]
        configs = [f"--config={path}" for path in (*self.shared_configs, *trial.run.configs)]
        checkpoint = pretrained or self.checkpoints.get(trial.seed, f"(no finished pretraining of seed {trial.seed})")
        run_args = [arg.replace(PRETRAINED, checkpoint) for arg in trial.run.args]
        return [*configs, *self.shared_args, *run_args, *trial.args()]

    def pretraining_trials(self, seeds: tuple[int | None, ...] | None = None) -> list[Trial]:
        """The pretraining run's trial per seed; [] without one."""
        return [Trial(self.pretraining, seed) for seed in (seeds or self.seeds)] if self.pretraining else []

    def baselines(self) -> list[tuple[str, str]]:
        """(run, the run it is judged against) for every run that has a baseline other than itself."""
        return [(run.name, run.baseline) for run in self.runs if run.baseline and run.baseline != run.name]

    def settings_of(self, run: Run) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the run's sweep values (the shared sweep, with the run's own on top); [()] when
        nothing is swept."""
        grid = dict(self.sweep) | dict(run.sweep)
        return [tuple(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]

    def trials(self, seeds: tuple[int | None, ...] | None = None) -> list[Trial]:
        """Every run x setting x seed, run by run."""
        return [
            Trial(run, seed, setting)
            for run in self.runs
            for setting in self.settings_of(run)
            for seed in (seeds or self.seeds)
        ]


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


# -- the compare config ---------------------------------------------------------------------------------------------


def _strings(value: Any, key: str) -> tuple[str, ...]:
    """A YAML list of strings, else a ConfigError naming `key`."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key}={value!r}: must be a list of strings")
    return tuple(value)


def _known_keys(mapping: Any, allowed: set[str], key: str) -> dict[str, Any]:
    """`mapping` as a dict whose keys are all in `allowed`, else a ConfigError naming the first other key."""
    if not isinstance(mapping, dict):
        what = key or "a compare config"
        raise ConfigError(f"{what}: must be a mapping with keys {', '.join(sorted(allowed))}; got {mapping!r}")
    for name in mapping:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"{where}: unknown key; allowed: {', '.join(sorted(allowed))}")
    return mapping


def _existing(paths: tuple[str, ...], key: str) -> tuple[str, ...]:
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"{key}: {path}: no such file (config paths are relative to the current folder)")
    return paths


def _safe_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise ConfigError(f"{key}={value!r}: must be a folder name of letters, digits, '.', '_' or '-'")
    return value


def _parse_sweep(value: Any, key: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """`{config key: [values]}`, each list non-empty and without repeats."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(f"{key}={value!r}: must be a mapping of config keys to lists of values")
    sweep = []
    for name, values in value.items():
        if not isinstance(name, str) or not SWEEP_KEY.fullmatch(name.removeprefix("--")):
            raise ConfigError(f"{key}.{name}: must be a config key such as optimizer.init_args.lr")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{key}.{name}={values!r}: must be a non-empty list of values")
        if len({cli_value(v) for v in values}) != len(values):
            raise ConfigError(f"{key}.{name}={values!r}: a value is repeated")
        sweep.append((name.removeprefix("--"), tuple(values)))
    return tuple(sweep)


def parse_seeds(value: Any, key: str) -> tuple[int, ...]:
    """A non-empty list of distinct whole numbers (at least 0)."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError(f"{key}={value!r}: must be a non-empty list of distinct whole numbers >= 0, e.g. [0, 1, 2]")
    return tuple(value)


def _parse_runs(entries: Any) -> tuple[Run, ...]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"runs={entries!r}: must be a non-empty list of runs (each with name, configs, args)")
    runs: list[Run] = []
    for i, entry in enumerate(entries):
        entry = _known_keys(entry, RUN_KEYS, f"runs[{i}]")
        if "name" not in entry:
            raise ConfigError(f"runs[{i}]: missing key 'name'")
        name = _safe_name(entry["name"], f"runs[{i}].name")
        earlier = [j for j, run in enumerate(runs) if run.name == name]
        if earlier:
            raise ConfigError(
                f"runs[{i}].name={name!r}: duplicate run name (also runs[{earlier[0]}]); names must differ"
            )
        configs = _existing(_strings(entry.get("configs"), f"runs[{i}].configs"), f"runs[{i}].configs")
        sweep = _parse_sweep(entry.get("sweep"), f"runs[{i}].sweep")
        baseline = entry.get("baseline")
        runs.append(Run(name, configs, _strings(entry.get("args"), f"runs[{i}].args"), sweep, baseline))
    names = [run.name for run in runs]
    for i, run in enumerate(runs):
        if run.baseline is not None and run.baseline not in names:
            raise ConfigError(
                f"runs[{i}].baseline={run.baseline!r}: not a run of this comparison; choose one of {', '.join(names)}"
            )
    return tuple(runs)


def _parse_pretraining(value: Any) -> Run | None:
    """The `pretraining` run: a name (default `pretraining`), its own configs and args (not the shared ones)."""
    if value is None:
        return None
    entry = _known_keys(value, PRETRAINING_KEYS, "pretraining")
    name = _safe_name(entry.get("name", "pretraining"), "pretraining.name")
    configs = _existing(_strings(entry.get("configs"), "pretraining.configs"), "pretraining.configs")
    return Run(name, configs, _strings(entry.get("args"), "pretraining.args"))


def _parse_curve(value: Any) -> tuple[str, tuple[Any, ...]] | None:
    """`{config key: [values]}` with one key."""
    if value is None:
        return None
    curve = _parse_sweep(value, "curve")
    if len(curve) != 1:
        raise ConfigError(f"curve={value!r}: must name one config key, e.g. {{data.train_size: [50, 200, 1000]}}")
    return curve[0]


def point_name(key: str, value: Any) -> str:
    """`train_size=50`: a value's folder name (the last part of its key), for a curve's points and a sweep's
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


def load_comparison(path: Path) -> Comparison:
    """Read and check a compare config; every error is one ConfigError line naming the file and the key."""
    raw = read_yaml(path, "--config")  # one line if missing, a folder, not YAML, or repeating a key
    try:
        raw = _known_keys(raw, KEYS, "")
        shared = _known_keys(raw.get("shared") or {}, SHARED_KEYS, "shared")
        target = raw.get("target")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
            raise ConfigError(f"target={target!r}: must be a number (the headline metric to reach)")
        entries = _parse_runs(raw.get("runs"))
        baseline = raw.get("baseline")
        if baseline is not None and baseline not in [run.name for run in entries]:
            names = ", ".join(run.name for run in entries)
            raise ConfigError(f"baseline={baseline!r}: not a run of this comparison; choose one of {names}")
        pretraining = _parse_pretraining(raw.get("pretraining"))
        if pretraining is not None and pretraining.name in [run.name for run in entries]:
            raise ConfigError(f"pretraining.name={pretraining.name!r}: also the name of a run; names must differ")
        if pretraining is None:
            for i, run in enumerate(entries):
                if any(PRETRAINED in arg for arg in run.args):
                    raise ConfigError(
                        f"runs[{i}].args: {PRETRAINED} names the pretraining checkpoint, but this "
                        "comparison has no `pretraining` run"
                    )
        curve = _parse_curve(raw.get("curve"))
        runs = along_curve(entries, curve, baseline)
        slurm = raw.get("slurm") or {}
        if not isinstance(slurm, dict):
            raise ConfigError(f"slurm={slurm!r}: must be a mapping of submitit's slurm parameters")
        return Comparison(
            source=path,
            name=_safe_name(raw.get("name", path.stem), "name"),
            runs=runs,
            shared_configs=_existing(_strings(shared.get("configs"), "shared.configs"), "shared.configs"),
            shared_args=_strings(shared.get("args"), "shared.args"),
            target=None if target is None else float(target),
            seeds=(None,) if raw.get("seeds") is None else parse_seeds(raw.get("seeds"), "seeds"),
            baseline=baseline,
            sweep=_parse_sweep(raw.get("sweep"), "sweep"),
            slurm=slurm,
            pretraining=pretraining,
            curve=curve,
        )
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
