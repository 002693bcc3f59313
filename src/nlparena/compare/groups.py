"""A comparison's trials by run and setting: the setting each run keeps (by validation), its numbers over seeds,
its verdicts against the baseline (`nlparena.compare.statistics`)."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from typing import Any

from nlparena.callbacks.test_outputs import FILE_NAME as TEST_OUTPUTS
from nlparena.compare.config import Record
from nlparena.compare.statistics import STATISTICS, Summary, Verdict, across_seeds, paired_bootstrap, summarize
from nlparena.events import RunEvents


def column_name(tag: str) -> str:
    """A scalar's tag as a results.csv column: `val/exact_match` -> `val_exact_match`."""
    return tag.replace("/", "_")


@dataclass
class Group:
    """The trials of one run with one setting: one per seed."""

    run: str
    setting: str
    records: list[Record]
    events: list[RunEvents]
    rows: list[dict[str, Any]]

    def finished(self) -> list[int]:
        return [i for i, record in enumerate(self.records) if record.status == "finished"]

    def values(self, column: str) -> list[float]:
        """The finished trials' values of a results.csv column (those that have one)."""
        return [v for i in self.finished() if (v := self.rows[i].get(column)) is not None]


def group_trials(records: list[Record], events: list[RunEvents], rows: list[dict[str, Any]]) -> list[Group]:
    """Trials grouped by (run, setting), in the config's order."""
    groups: dict[tuple[str, str], Group] = {}
    for record, run_events, row in zip(records, events, rows, strict=True):
        key = (record.run, record.trial.setting_name)
        group = groups.setdefault(key, Group(record.run, record.trial.setting_name, [], [], []))
        group.records.append(record)
        group.events.append(run_events)
        group.rows.append(row)
    return list(groups.values())


def select_settings(groups: list[Group], metric: str, mode: str) -> dict[str, Group]:
    """Each run's setting with the best mean (over seeds) of its best validation headline metric: by validation,
    never by test (a run's trials share one setting, the one its search chose). A run whose settings have no value
    keeps its first."""
    column = f"best_{column_name(metric)}"
    chosen: dict[str, Group] = {}
    for group in groups:
        values = group.values(column)
        if group.run not in chosen:
            chosen[group.run] = group
            continue
        held = chosen[group.run].values(column)
        if values and (not held or _better(mean_of(values), mean_of(held), mode)):
            chosen[group.run] = group
    return chosen


def mean_of(values: list[float]) -> float:
    return sum(values) / len(values)


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


SUMMARY_FIELDS = ("mean", "ci_low", "ci_high", "min", "max")  # of a Summary, in summary.csv


@dataclass
class RunSummary:
    """One run (its selected setting) over its finished seeds: a Summary per column, None where no seed has one."""

    run: str
    setting: str
    seeds: int
    columns: dict[str, Summary | None]
    reached: int | None = None  # of its finished seeds, those that reached the target; None without a target

    def csv_row(self) -> dict[str, Any]:
        """The run's row of summary.csv: `reached_target` (with a target), then `<column>_mean`, `_ci_low`,
        `_ci_high`, `_min` and `_max` per column."""
        row: dict[str, Any] = {"run": self.run, "setting": self.setting, "seeds": self.seeds}
        row |= {"reached_target": self.reached} if self.reached is not None else {}
        for column, stats in self.columns.items():
            row |= {f"{column}_{name}": None if stats is None else getattr(stats, name) for name in SUMMARY_FIELDS}
        return row


def summarize_runs(selected: dict[str, Group], columns: list[str]) -> list[RunSummary]:
    """Per run (its selected setting): its seeds, and each column's mean, 95 % CI and min / max over them."""
    return [
        RunSummary(
            run,
            group.setting,
            len(group.finished()),
            {c: summarize(v) if (v := group.values(c)) else None for c in columns},
        )
        for run, group in selected.items()
    ]


def read_test_outputs(record: Record) -> dict[int, tuple[str, str, int]] | None:
    """A trial's `test_outputs.csv`: index -> (reference, output, correct); None when it has none."""
    path = record.version_dir / TEST_OUTPUTS if record.version_dir else None
    if path is None or not path.is_file():
        return None
    with path.open(newline="") as file:
        return {int(r["index"]): (r["reference"], r["output"], int(r["correct"])) for r in csv.DictReader(file)}


def paired_outputs(candidate: Group, baseline: Group, statistic: str) -> tuple[Any, Any, Any] | None:
    """The two runs' test outputs on the same examples, seed by seed (the seeds both finished; every seed tests
    the same examples, the data's seed being its own), as arrays for the paired bootstrap: correctness for exact
    match (references None), class ids and the true class ids for macro F1."""
    import numpy as np

    by_seed = {}
    for group in (candidate, baseline):
        outputs = {}
        for i in group.finished():
            found = read_test_outputs(group.records[i])
            if found:
                outputs[group.rows[i]["seed"]] = found
        by_seed[id(group)] = outputs
    seeds = sorted(set(by_seed[id(candidate)]) & set(by_seed[id(baseline)]), key=str)
    if not seeds:
        return None
    cand, base, refs = [], [], []
    for seed in seeds:
        a, b = by_seed[id(candidate)][seed], by_seed[id(baseline)][seed]
        for index in sorted(set(a) & set(b)):
            if statistic == "exact_match":
                cand.append(a[index][2])
                base.append(b[index][2])
            else:
                cand.append(a[index][1])
                base.append(b[index][1])
                refs.append(a[index][0])
    if statistic == "exact_match":
        return np.array(cand), np.array(base), None
    names = {name: i for i, name in enumerate(sorted(set(cand) | set(base) | set(refs)))}
    ids = [np.array([names[name] for name in values]) for values in (cand, base, refs)]
    return ids[0], ids[1], ids[2]


@dataclass
class BaselineVerdicts:
    """A run against its baseline on the test headline metric: the paired bootstrap over test examples and Welch's
    t-test over the seeds' values (None where there is too little to test)."""

    run: str
    baseline: str
    metric: str
    bootstrap: Verdict | None = None
    seeds: Verdict | None = None

    def csv_row(self) -> dict[str, Any]:
        """The pair's row of verdicts.csv: `bootstrap_<field>` and `seeds_<field>` for each Verdict field."""
        row: dict[str, Any] = {"run": self.run, "baseline": self.baseline, "metric": self.metric}
        for prefix, verdict in (("bootstrap", self.bootstrap), ("seeds", self.seeds)):
            if verdict is not None:
                row |= {f"{prefix}_{name}": value for name, value in asdict(verdict).items()}
        return row


def verdicts(
    selected: dict[str, Group], pairs: list[tuple[str, str]], test_metric: str, mode: str
) -> list[BaselineVerdicts]:
    """Each (run, baseline) pair on the test headline metric: the paired bootstrap over test examples (Koehn 2004) and
    Welch's t-test over the seeds' test values. Pairs whose runs have no trials are left out."""
    name = test_metric.removeprefix("test/")
    statistic = STATISTICS.get(name)
    found = []
    for run, baseline in pairs:
        group, base = selected.get(run), selected.get(baseline)
        if group is None or base is None:
            continue
        pair = BaselineVerdicts(run, baseline, test_metric)
        paired = paired_outputs(group, base, name) if statistic else None
        if paired is not None:
            pair.bootstrap = paired_bootstrap(*paired, statistic, mode)
        seeds_a, seeds_b = group.values(column_name(test_metric)), base.values(column_name(test_metric))
        if len(seeds_a) >= 2 and len(seeds_b) >= 2:
            pair.seeds = across_seeds(seeds_a, seeds_b, mode)
        found.append(pair)
    return found
