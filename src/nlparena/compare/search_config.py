"""The `search:` key of a compare config: the space of settings each run is tuned over, the budget (the same number
of trials for every run), the sampler, the pruner and the sampler's seed. Read and checked here, without Optuna
(`search.py` turns it into Optuna's distributions, sampler and pruner); every error is one ConfigError line naming
the key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nlparena.compare.values import CONFIG_KEY, cli_value
from nlparena.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("asha", "median", "none")
# search trials train with seed SEARCH_SEEDS + their trial number: never one of the comparison's own seeds, so that
# the verdicts are on seeds the search did not see
SEARCH_SEEDS = 1_000_000


@dataclass(frozen=True)
class Range:
    """`{low, high, log}`: a float range, or an int range where both ends are whole numbers."""

    low: float
    high: float
    log: bool = False

    @property
    def is_int(self) -> bool:
        return all(isinstance(end, int) for end in (self.low, self.high))


@dataclass(frozen=True)
class Choice:
    """A list of values: one of them."""

    values: tuple[Any, ...]


Dimension = Range | Choice
Space = tuple[tuple[str, Dimension], ...]  # config key (without `--`) -> its dimension, in the config's order


def grid_points(space: Space) -> int:
    """How many settings the lists of `space` make together (a grid's size)."""
    return math.prod(len(dim.values) for _, dim in space if isinstance(dim, Choice))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}={value!r}: must be a number")
    return value


def dimension(value: Any, where: str) -> Dimension:
    """A space entry as a Range (`{low, high}` with an optional `log`) or a Choice (a non-empty list), else a
    ConfigError naming `where`."""
    if isinstance(value, list):
        if not value or len({cli_value(v) for v in value}) != len(value):
            raise ConfigError(f"{where}={value!r}: must be a non-empty list of values, none repeated")
        return Choice(tuple(value))
    if not isinstance(value, dict) or not {"low", "high"} <= set(value) or set(value) - {"low", "high", "log"}:
        raise ConfigError(
            f"{where}={value!r}: must be a range {{low: L, high: H, log: false}} or a list of values to choose from"
        )
    low, high = _number(value["low"], f"{where}.low"), _number(value["high"], f"{where}.high")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log={log!r}: must be true or false")
    if low >= high:
        raise ConfigError(f"{where}: low {low!r} >= high {high!r}; low must be below high")
    if log and low <= 0:
        raise ConfigError(f"{where}: log: true needs low > 0 (got low {low!r}); a log scale starts above 0")
    return Range(low, high, log)


def check_space(space: dict[str, Any], where: str) -> Space:
    """`space:` as (config key without `--`, Dimension) pairs, each checked (see `dimension`)."""
    if not isinstance(space, dict):
        raise ConfigError(f"{where}={space!r}: must be a mapping of config keys to ranges or lists")
    checked = []
    for key, value in space.items():
        if not isinstance(key, str) or not CONFIG_KEY.fullmatch(key):
            raise ConfigError(f"{where}.{key}: must be a config key such as optimizer.init_args.lr")
        checked.append((key.removeprefix("--"), dimension(value, f"{where}.{key}")))
    return tuple(checked)


@dataclass
class RunSearchEntry:
    """A run's own `search:`: space entries added to the shared ones, or replacing those of the same key (the budget,
    sampler and pruner are the comparison's, the same for every run)."""

    space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_space(self.space, "search.space")


@dataclass
class SearchEntry:
    """`search:` of a compare config."""

    space: dict[str, Any] = field(default_factory=dict)
    trials: int | None = None  # per run, the equal budget; for `grid`, default: the size of the grid
    sampler: str = "tpe"
    pruner: str = "asha"
    seed: int = 0  # the sampler's seed, not a training seed
    args: list[str] = field(default_factory=list)  # given to search trials only (fewer epochs, say)
    prune_after: int = 0  # validations every trial gets before the pruner may stop it

    def __post_init__(self) -> None:
        check_space(self.space, "search.space")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"search.sampler={self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"search.pruner={self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if self.trials is not None and self.trials < 1:
            raise ConfigError(f"search.trials={self.trials!r}: must be at least 1 (the trials of each run)")
        if self.trials is None and self.sampler != "grid":
            raise ConfigError(f"search.trials: the number of trials of each run is needed with sampler {self.sampler}")
        if self.seed < 0:
            raise ConfigError(f"search.seed={self.seed!r}: must be a whole number >= 0")
        if self.prune_after < 0:
            raise ConfigError(f"search.prune_after={self.prune_after!r}: must be a whole number >= 0 (validations)")


@dataclass(frozen=True)
class Search:
    """The comparison's search: its settings, with the shared space checked."""

    space: Space
    trials: int | None
    sampler: str
    pruner: str
    seed: int
    args: tuple[str, ...]
    prune_after: int = 0

    @classmethod
    def of(cls, entry: SearchEntry) -> Search:
        return cls(
            check_space(entry.space, "search.space"),
            entry.trials,
            entry.sampler,
            entry.pruner,
            entry.seed,
            tuple(entry.args),
            entry.prune_after,
        )

    def space_of(self, own: Space, run: str) -> Space:
        """A run's space: the shared one with the run's own entries added or replacing; a grid is refused a range."""
        space = tuple((dict(self.space) | dict(own)).items())
        if not space:
            raise ConfigError(f"search: runs ({run}) has an empty space; give search.space or the run's search.space")
        for key, dim in space:
            if self.sampler == "grid" and isinstance(dim, Range):
                raise ConfigError(
                    f"search.space.{key}: a range, but the grid sampler takes lists of values only; "
                    "list the values, or use sampler: tpe or random"
                )
        points = grid_points(space)
        if self.sampler == "grid" and self.trials is not None and self.trials > points:
            raise ConfigError(f"search.trials={self.trials}: more than the {points} points of {run}'s grid")
        return space

    def budget(self, space: Space) -> int:
        """Trials of a run: `trials`, or for a grid without it, the number of points of the grid."""
        if self.trials is not None:
            return self.trials
        return grid_points(space)

    def probes(self, space: Space) -> list[tuple[tuple[str, Any], ...]]:
        """Settings to build each run with before anything runs: every key at each end of its range and at each of
        its values, the others at their first, so that a bad key or value fails at once."""
        first = {key: dim.low if isinstance(dim, Range) else dim.values[0] for key, dim in space}
        points = [tuple(first.items())]
        for key, dim in space:
            for value in (dim.high,) if isinstance(dim, Range) else dim.values[1:]:
                points.append(tuple((first | {key: value}).items()))
        return points
