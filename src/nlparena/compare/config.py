"""A compare config (`configs/compare/*.yaml`) read and checked, and what identifies one run's settings.

Every error is one ConfigError line naming the file and the key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
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
KEYS = {"name", "shared", "target", "runs"}
SHARED_KEYS = {"configs", "args"}
RUN_KEYS = {"name", "configs", "args"}
ERROR_LINES = 20  # of a failed run's stderr, kept in its compare.json
ERROR_CHARS = 300  # of its last line, shown in the terminal and the report (exception messages can be long)


@dataclass(frozen=True)
class Run:
    """One entry of `runs`: a name (its log folder) and what `nlparena fit` is given on top of `shared`."""

    name: str
    configs: tuple[str, ...] = ()
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """A validated compare config."""

    source: Path
    name: str
    runs: tuple[Run, ...]
    shared_configs: tuple[str, ...] = ()
    shared_args: tuple[str, ...] = ()
    target: float | None = None

    @property
    def log_dir(self) -> Path:
        return Path("logs", "compare", self.name)

    def fit_args(self, run: Run) -> list[str]:
        """What `nlparena fit` is given for `run`: shared configs, the run's configs, shared args, the run's args."""
        configs = [f"--config={path}" for path in (*self.shared_configs, *run.configs)]
        return [*configs, *self.shared_args, *run.args]


@dataclass
class Record:
    """One attempt at a run, as its `compare.json` says (or as the comparison saw it, for a run never started)."""

    run: str
    status: str  # "finished", "failed" or "not run"
    version_dir: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)

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
        runs.append(Run(name, configs, _strings(entry.get("args"), f"runs[{i}].args")))
    return tuple(runs)


def load_comparison(path: Path) -> Comparison:
    """Read and check a compare config; every error is one ConfigError line naming the file and the key."""
    raw = read_yaml(path, "--config")  # one line if missing, a folder, not YAML, or repeating a key
    try:
        raw = _known_keys(raw, KEYS, "")
        shared = _known_keys(raw.get("shared") or {}, SHARED_KEYS, "shared")
        target = raw.get("target")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
            raise ConfigError(f"target={target!r}: must be a number (the headline metric to reach)")
        return Comparison(
            source=path,
            name=_safe_name(raw.get("name", path.stem), "name"),
            runs=_parse_runs(raw.get("runs")),
            shared_configs=_existing(_strings(shared.get("configs"), "shared.configs"), "shared.configs"),
            shared_args=_strings(shared.get("args"), "shared.args"),
            target=None if target is None else float(target),
        )
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
