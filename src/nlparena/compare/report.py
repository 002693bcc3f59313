"""The report of `nlparena compare`: `report.md`, `results.csv` and `figures/*.png` in `logs/compare/NAME/`,
built from each run's TensorBoard event files (read by `nlparena.events`) and its `compare.json`.

Per trial (run x setting x seed): parameters, fit time, training throughput, steps to reach the target, best
validation headline metric, test metrics; with a target, whether it reached it and after how many epochs. Per run
(with the setting its search chose by validation, if it searches): mean, 95 % confidence interval and min / max over
seeds, in how many seeds it reached the target, and against the `baseline` run a verdict (better, worse, no
detectable difference) from a paired bootstrap over test examples and from Welch's t-test over seeds. On top of it
all, in words (`plain_summary`): too few seeds, each run against its baseline, the runs at chance level (`chance`).
Figures: the validation headline metric against the epoch (mean over seeds with a band), exact match, token accuracy
and BLEU per source-length bucket for translation, confusion matrices side by side for classification.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from nlparena.callbacks.test_outputs import SACREBLEU_FILE
from nlparena.compare.chance import at_chance
from nlparena.compare.config import Comparison, Record
from nlparena.compare.groups import (
    Group,
    column_name,
    group_trials,
    select_settings,
    summarize_runs,
    verdicts,
)
from nlparena.compare.plots import BUCKETS, confusion_figure, curve_figure, length_figure, points_figure
from nlparena.compare.search_report import search_section
from nlparena.compare.sections import Tables, markdown, pretraining_lines
from nlparena.events import RunEvents, read_events


def best_of(series: list[tuple[int, float]], mode: str) -> float | None:
    values = [value for _, value in series]
    return (max if mode == "max" else min)(values) if values else None


def best_value(record: Record) -> float | None:
    """Best logged value of the record's headline metric (None if it logged none)."""
    data = record.data
    metric = data.get("headline_metric")
    return best_of(read_events(record.version_dir).scalars.get(metric, []), data.get("headline_mode", "max"))


def steps_to(series: list[tuple[int, float]], target: float | None, mode: str) -> int | None:
    """First logged step at which the metric reaches `target` (>= for "max" metrics, <= for "min"); None if never."""
    if target is None:
        return None
    reached = (lambda v: v >= target) if mode == "max" else (lambda v: v <= target)
    return next((step for step, value in series if reached(value)), None)


def to_target(record: Record, run: RunEvents, steps: int | None) -> dict[str, Any]:
    """Whether a trial reached the target (None if it never ran), the step at which it first did (`steps_to`) and
    the epochs it had trained then (the epoch Lightning logged at that step, counted from 1)."""
    epoch = dict(run.scalars.get("epoch", [])).get(steps) if steps is not None else None
    return {
        "reached_target": None if record.status == "not run" else steps is not None,
        "steps_to_target": steps,
        "epochs_to_target": None if epoch is None else round(epoch) + 1,
    }


def single_number_test_metrics(events: list[RunEvents], headline: str) -> list[str]:
    """The single-number test metrics any run logged (`test/exact_match`, not `test/f1/<class>`), headline first."""
    tags = {tag for run in events for tag in run.scalars if tag.count("/") == 1 and tag.startswith("test/")}
    first = "test/" + headline.removeprefix("val/")
    return sorted(tags, key=lambda tag: (tag != first, tag))


def length_test_metrics(events: list[RunEvents]) -> list[str]:
    """The per source-length test metrics any run logged (`test/exact_match_by_length/09-12`), by metric and bucket."""
    prefixes = tuple(f"test/{key}/" for key in BUCKETS)
    return sorted({tag for run in events for tag in run.scalars if tag.startswith(prefixes)})


def sacrebleu_signatures(records: list[Record]) -> dict[str, str]:
    """The signature of each sacreBLEU score the trials logged (`sacrebleu.json` in their run folders), by logged
    name; a score whose trials used different settings has each of its signatures, joined by ` / `."""
    found: dict[str, list[str]] = {}
    for record in records:
        path = record.version_dir / SACREBLEU_FILE if record.version_dir else None
        if path is None or not path.is_file():
            continue
        for name, entry in json.loads(path.read_text()).items():
            if entry["signature"] not in found.setdefault(name, []):
                found[name].append(entry["signature"])
    return {name: " / ".join(signatures) for name, signatures in sorted(found.items())}


def results(
    comparison: Comparison, records: list[Record], events: list[RunEvents], metric: str, mode: str
) -> list[dict[str, Any]]:
    """One row per trial (run, setting, seed): the numbers of results.csv (None where a trial has none)."""
    rows = []
    tests = single_number_test_metrics(events, metric)
    by_length = length_test_metrics(events)
    for record, run in zip(records, events, strict=True):
        parameters = run.last("compare/parameters")
        series = run.scalars.get(metric, [])
        steps = steps_to(series, comparison.target, mode)
        row = {
            "run": record.run,
            "setting": record.trial.setting_name,
            "seed": record.trial.seed if record.trial.seed is not None else record.data.get("seed"),
            "status": record.status,
            "model": record.data.get("model"),
            "parameters": None if parameters is None else round(parameters),  # logged as float32
            "fit_seconds": run.last("compare/fit_seconds"),
            "samples_per_second": run.last("compare/samples_per_second"),
            "tokens_per_second": run.last("compare/tokens_per_second"),
            **(to_target(record, run, steps) if comparison.target is not None else {"steps_to_target": steps}),
            f"best_{column_name(metric)}": best_of(series, mode),
        }
        row.update({column_name(tag): run.last(tag) for tag in tests})
        row.update({column_name(tag): run.last(tag) for tag in by_length})
        row["log_dir"] = str(record.version_dir) if record.version_dir else None
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Full precision (float repr), empty cells where a run has no value."""
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})


def summarized(
    comparison: Comparison, records: list[Record], events: list[RunEvents], metric: str, mode: str
) -> tuple[Tables, dict[str, Group], list[Group]]:
    """The trials' rows, each run's selected setting over its seeds and the verdicts; with the selected
    groups and all groups (for the figures)."""
    rows = results(comparison, records, events, metric, mode)
    groups = group_trials(records, events, rows)
    selected = select_settings(groups, metric, mode)
    tests = [column_name(tag) for tag in single_number_test_metrics(events, metric)]
    by_length = [column_name(tag) for tag in length_test_metrics(events)]
    summary = summarize_runs(selected, [f"best_{column_name(metric)}", *tests, "fit_seconds", *by_length])
    if comparison.target is not None:
        for run in summary:
            run.reached = sum(1 for reached in selected[run.run].values("reached_target") if reached)
    test_metric = "test/" + metric.removeprefix("val/")
    pairs = verdicts(selected, comparison.baselines(), test_metric, mode)
    tables = Tables(comparison, records, rows, summary, pairs, metric, mode, sacrebleu_signatures(records))
    tables.chance = at_chance(selected, summary, test_metric) if mode == "max" else {}
    return tables, selected, groups


def headline(records: list[Record]) -> tuple[str, str]:
    """The headline metric and its mode, as the first trial that recorded them says (val/loss, min if none did)."""
    info = next((r.data for r in records if r.data.get("headline_metric")), {})
    return info.get("headline_metric", "val/loss"), info.get("headline_mode", "min")


def pretraining_section(
    comparison: Comparison, records: list[Record], explained: set[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The pretraining trials: their headline and test metrics per seed and over seeds (the lines of report.md, the
    rows of pretraining.csv); `explained` holds the report's columns explained so far."""
    if not records:
        return [], []
    metric, mode = headline(records)
    events = [read_events(record.version_dir) for record in records]
    rows = results(comparison, records, events, metric, mode)
    tests = [column_name(tag) for tag in single_number_test_metrics(events, metric)]
    columns = [f"best_{column_name(metric)}", *tests, "fit_seconds"]
    summary = summarize_runs({group.run: group for group in group_trials(records, events, rows)}, columns)
    tables = Tables(comparison, records, rows, summary, [], metric, mode, explained=explained)
    return pretraining_lines(tables, columns), rows


def draw_figures(comparison: Comparison, tables: Tables, selected: dict[str, Group], folder: Path) -> list[Path]:
    """The figures report.md shows (those with something to draw). Along a curve, the per-run figures show its first
    point only: one panel or line per run and point is unreadable."""
    first = {r.name for r in comparison.runs if comparison.curve is None or r.point == comparison.curve[1][0]}
    shown = {run: group for run, group in selected.items() if run in first}
    failed = {record.run for record in tables.records if record.status == "failed"}
    metric, test_metric = tables.metric, "test/" + tables.metric.removeprefix("val/")
    figures = [
        curve_figure(shown, metric, comparison.target, failed, folder / "figures" / f"{column_name(metric)}.png"),
        length_figure(shown, folder / "figures" / "test_by_length.png"),
        confusion_figure(shown, folder / "figures" / "test_confusion_matrices.png"),
        points_figure(comparison, selected, test_metric, folder / "figures" / f"{column_name(test_metric)}_curve.png"),
    ]
    return [path for path in figures if path is not None]


def write_report(
    comparison: Comparison, records: list[Record], pretraining: list[Record] = (), studies: dict[str, Any] | None = None
) -> Path:
    """Write report.md, results.csv (a row per trial), summary.csv (a row per run), verdicts.csv (with a baseline),
    search.csv (with a search: `studies`, run -> its RunStudy), pretraining.csv (with a pretraining run) and
    figures/ for `records`; returns report.md's path."""
    metric, mode = headline(records)
    events = [read_events(record.version_dir) for record in records]
    tables, selected, _ = summarized(comparison, records, events, metric, mode)
    folder = comparison.log_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(tables.rows, folder / "results.csv")
    if tables.summary:
        write_csv([run.csv_row() for run in tables.summary], folder / "summary.csv")
    if tables.verdicts:
        write_csv([pair.csv_row() for pair in tables.verdicts], folder / "verdicts.csv")
    if studies:
        tables.search, search_rows = search_section(comparison, studies, tables, folder)
        if search_rows:
            write_csv(search_rows, folder / "search.csv")
    pretraining_text, pretraining_rows = pretraining_section(comparison, list(pretraining), tables.explained)
    if pretraining_rows:
        write_csv(pretraining_rows, folder / "pretraining.csv")
    figures = draw_figures(comparison, tables, selected, folder)
    report = folder / "report.md"
    report.write_text(markdown(tables, pretraining_text, figures))
    return report
