"""The report of `nlparena compare`: `report.md`, `results.csv` and `figures/*.png` in `logs/compare/NAME/`,
built from each run's TensorBoard event files (read by `nlparena.events`) and its `compare.json`.

Per trial (run x setting x seed): parameters, fit time, training throughput, steps to reach the target, best
validation headline metric, test metrics. Per run (its setting with the best mean validation metric, when it sweeps):
mean, 95 % confidence interval and min / max over seeds, and against the `baseline` run a verdict (better, worse, no
detectable difference) from a paired bootstrap over test examples and from Welch's t-test over seeds. Figures: the
validation headline metric against the epoch (mean over seeds with a band), exact match, token accuracy and BLEU per
source-length bucket for translation, confusion matrices side by side for classification.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from nlparena.compare.config import Comparison, Record, cli_value, point_name
from nlparena.compare.groups import column_name, group_trials, select_settings, summary_rows, sweep_rows, verdicts
from nlparena.compare.plots import BUCKETS, confusion_figure, curve_figure, length_figure, points_figure
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


def single_number_test_metrics(events: list[RunEvents], headline: str) -> list[str]:
    """The single-number test metrics any run logged (`test/exact_match`, not `test/f1/<class>`), headline first."""
    tags = {tag for run in events for tag in run.scalars if tag.count("/") == 1 and tag.startswith("test/")}
    first = "test/" + headline.removeprefix("val/")
    return sorted(tags, key=lambda tag: (tag != first, tag))


def length_test_metrics(events: list[RunEvents]) -> list[str]:
    """The per source-length test metrics any run logged (`test/exact_match_by_length/09-12`), by metric and bucket."""
    prefixes = tuple(f"test/{key}/" for key in BUCKETS)
    return sorted({tag for run in events for tag in run.scalars if tag.startswith(prefixes)})


def is_length_column(column: str) -> bool:
    return any(column.startswith(f"test_{key}_") for key in BUCKETS)


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
            "steps_to_target": steps_to(series, comparison.target, mode),
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


# -- report.md ------------------------------------------------------------------------------------------------------


def _number(value: Any, column: str) -> str:
    """Rounded for reading: parameters with separators, seconds and rates whole, metrics to 3 decimals."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else ""
    if column in ("parameters", "seed", "seeds"):
        return f"{value:,}" if column == "parameters" else str(value)
    if column == "steps_to_target":
        return str(value)
    if column in ("fit_seconds", "samples_per_second", "tokens_per_second"):
        return f"{value:.1f}" if value < 10 else f"{value:,.0f}"
    return f"{value:.3f}"


def _header(column: str, comparison: Comparison, metric: str, mode: str) -> str:
    names = {
        "fit_seconds": "fit (s)",
        "samples_per_second": "samples/s",
        "tokens_per_second": "tokens/s",
        "steps_to_target": f"steps to {metric} {'≥' if mode == 'max' else '≤'} {comparison.target}",
        f"best_{column_name(metric)}": f"best {metric}",
    }
    return names.get(column, column.replace("test_", "test/", 1) if column.startswith("test_") else column)


def _table(headers: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" if i < text_columns else "---:" for i in range(len(headers))) + "|")
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _mean_ci(row: dict[str, Any], column: str) -> str:
    """`0.912 ± 0.021 [0.88, 0.94]`: mean ± half the 95 % CI, [min, max]; the mean alone for one seed."""
    mean = row.get(f"{column}_mean")
    if mean is None:
        return "—"
    low, high = row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    if row["seeds"] < 2 or low != low:  # one seed: no interval
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(high - low) / 2:.3f} [{row[f'{column}_min']:.3f}, {row[f'{column}_max']:.3f}]"


def _verdict_text(row: dict[str, Any], prefix: str) -> str:
    if f"{prefix}_verdict" not in row:
        return "—"
    difference, low, high = row[f"{prefix}_difference"], row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    return (
        f"{row[f'{prefix}_verdict']} (Δ {difference:+.3f}, 95 % CI [{low:+.3f}, {high:+.3f}], "
        f"p = {row[f'{prefix}_p_value']:.3g})"
    )


def length_tables(summary: list[dict[str, Any]]) -> list[str]:
    """Per source-length metric, a table of each run's test value per bucket (mean ± half the 95 % CI over seeds,
    [lowest, highest]); the seeds' own values are in results.csv."""
    lines: list[str] = []
    for key, label in BUCKETS.items():
        prefix = f"test_{key}_"
        buckets = sorted(
            {
                c.removeprefix(prefix).removesuffix("_mean")
                for row in summary
                for c in row
                if c.startswith(prefix) and c.endswith("_mean")
            }
        )
        if not buckets:
            continue
        lines += ["", f"## Test {label} by source length (mean ± half the 95 % CI over seeds, [lowest, highest])", ""]
        body = [[f"`{row['run']}`", *(_mean_ci(row, prefix + bucket) for bucket in buckets)] for row in summary]
        lines += _table(["run", *buckets], body)
    return lines


def curve_table(comparison: Comparison, summary: list[dict[str, Any]], metric: str) -> list[str]:
    """With a curve: each run's test headline metric at every point of the curve (mean ± half the 95 % CI over
    seeds, [lowest, highest])."""
    if comparison.curve is None:
        return []
    key, values = comparison.curve
    column = column_name("test/" + metric.removeprefix("val/"))
    found = {row["run"]: row for row in summary}
    points = [point_name(key, value) for value in values]
    lines = [
        "",
        f"## Test {metric.removeprefix('val/')} along `{key}` (mean ± half the 95 % CI over seeds, [lowest, highest])",
        "",
    ]
    body = []
    for line in dict.fromkeys(run.line_name for run in comparison.runs):
        cells = [_mean_ci(found[name], column) if (name := f"{line}/{p}") in found else "—" for p in points]
        body.append([f"`{line}`", *cells])
    return lines + _table(["run", *(p.split("=", 1)[1] for p in points)], body)


def pretraining_section(comparison: Comparison, records: list[Record]) -> tuple[list[str], list[dict[str, Any]]]:
    """The pretraining trials: their headline and test metrics per seed and over seeds (the lines of report.md, the
    rows of pretraining.csv)."""
    if not records:
        return [], []
    info = next((r.data for r in records if r.data.get("headline_metric")), {})
    metric, mode = info.get("headline_metric", "val/loss"), info.get("headline_mode", "min")
    events = [read_events(record.version_dir) for record in records]
    rows = results(comparison, records, events, metric, mode)
    tests = [column_name(tag) for tag in single_number_test_metrics(events, metric)]
    columns = [f"best_{column_name(metric)}", *tests, "fit_seconds"]
    summary = summary_rows({group.run: group for group in group_trials(records, events, rows)}, columns)
    run = comparison.pretraining
    given = " ".join(f"`{a}`" for a in (*(f"-c {p}" for p in run.configs), *run.args))
    headers = [_header(c, comparison, metric, mode) for c in columns]
    lines = [
        "",
        f"## Pretraining `{run.name}` (once per seed; `{{pretraining}}` in a run's args is its checkpoint)",
        "",
    ]
    lines += [f"{given}", ""]
    lines += _table(
        ["", "seeds", *headers],
        [["mean ± half CI [min, max]", str(r["seeds"]), *(_mean_ci(r, c) for c in columns)] for r in summary],
    )
    lines += [""]
    lines += _table(
        ["seed", "status", *headers],
        [[str(r["seed"]), r["status"], *(_number(r[c], c) for c in columns)] for r in rows],
        2,
    )
    failed = [r for r in records if r.status == "failed"]
    lines += [
        f"- `{r.trial.label}` ({r.version_dir}), exit {r.data.get('exit_code')}: {r.data.get('error')}" for r in failed
    ]
    return lines, rows


def markdown(
    comparison: Comparison,
    records: list[Record],
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    verdict_rows: list[dict[str, Any]],
    sweep: list[dict[str, Any]],
    figures: list[Path],
    metric: str,
    mode: str,
    pretraining: list[str],
) -> str:
    """report.md: what was compared; per run mean ± CI over seeds; the verdicts against the baseline; the sweep;
    every trial's numbers; failed trials with their error; the figures."""
    shared = comparison.shared_configs and ", ".join(f"`{p}`" for p in comparison.shared_configs)
    seeds = sorted({str(row["seed"]) for row in rows if row["seed"] is not None})
    lines = [
        f"# Comparison `{comparison.name}`",
        "",
        f"Config `{comparison.source}`; logs in `{comparison.log_dir}` (`tensorboard --logdir {comparison.log_dir}`).",
        "",
        f"- shared configs: {shared or 'none'}",
        f"- shared args: {' '.join(f'`{a}`' for a in comparison.shared_args) or 'none'}",
        f"- headline metric: `{metric}` ({'higher' if mode == 'max' else 'lower'} is better)"
        + (f", target {comparison.target:g}" if comparison.target is not None else ""),
        f"- seeds: {', '.join(seeds) or 'as configured'}",
    ]
    if comparison.baseline:
        lines.append(f"- baseline: `{comparison.baseline}`")
    if comparison.curve is not None:
        key, values = comparison.curve
        lines.append(f"- curve: every run at `{key}` = {', '.join(cli_value(v) for v in values)}")
    described = set()
    for run in comparison.runs:
        if run.line_name in described:
            continue
        described.add(run.line_name)
        args = run.args[:-1] if run.point is not None else run.args  # the curve's value is said once, above
        given = " ".join(f"`{a}`" for a in (*(f"-c {p}" for p in run.configs), *args)) or "the shared settings only"
        baseline = run.baseline_line
        against = f" (against `{baseline}`)" if baseline and baseline != comparison.baseline else ""
        lines.append(f"- `{run.line_name}`: {given}{against}")
    lines += pretraining
    metric_columns = [c for c in (summary[0] if summary else {}) if c.endswith("_mean") and not is_length_column(c)]
    columns = [c.removesuffix("_mean") for c in metric_columns]
    lines += ["", "## Results (mean ± half the 95 % CI over seeds, [lowest, highest])", ""]
    swept = any(row["setting"] for row in summary)
    headers = [
        "run",
        *(["setting"] if swept else []),
        "seeds",
        *(_header(c, comparison, metric, mode) for c in columns),
    ]
    body = [
        [
            f"`{row['run']}`",
            *([row["setting"]] if swept else []),
            str(row["seeds"]),
            *(_mean_ci(row, c) for c in columns),
        ]
        for row in summary
    ]
    lines += _table(headers, body, 2 if swept else 1)
    lines += curve_table(comparison, summary, metric)
    if verdict_rows:
        test_metric = verdict_rows[0]["metric"]
        baselines = sorted({r["baseline"] for r in verdict_rows})
        one = len(baselines) == 1  # named in the heading; else a column
        against = f"the baseline `{baselines[0]}`" if one else "each run's baseline"
        lines += ["", f"## Against {against} ({test_metric})", ""]
        lines += [
            "Paired bootstrap over the test examples of every seed (Koehn 2004), and Welch's t-test over the seeds' "
            "test values; a difference is reported as better or worse only when its 95 % CI excludes 0.",
            "",
        ]
        body = [
            [
                f"`{r['run']}`",
                *([] if one else [f"`{r['baseline']}`"]),
                _verdict_text(r, "bootstrap"),
                _verdict_text(r, "seeds"),
            ]
            for r in verdict_rows
        ]
        headers = ["run", *([] if one else ["baseline"]), "paired bootstrap over test examples"]
        lines += _table([*headers, "Welch's t-test over seeds"], body, len(headers) - 1)
    if sweep and any(row["setting"] for row in sweep):
        lines += ["", f"## Sweep (each run keeps its setting with the best mean {metric}; test is never used)", ""]
        body = [
            [
                f"`{r['run']}`",
                r["setting"],
                str(r["seeds"]),
                _number(r["mean"], ""),
                "selected" if r["selected"] else "",
            ]
            for r in sweep
        ]
        lines += _table(["run", "setting", "seeds", f"mean best {metric}", ""], body, 2)
    lines += length_tables(summary)
    unused = {"log_dir"} | ({"steps_to_target"} if comparison.target is None else set())
    unused |= set() if any(row["setting"] for row in rows) else {"setting"}
    # per-length values stay in results.csv: a column per bucket would make this table unreadable
    trial_columns = [column for column in rows[0] if column not in unused and not is_length_column(column)]
    lines += ["", "## Every trial", ""]
    body = [[_number(row[c], c) for c in trial_columns] for row in rows]
    text = sum(1 for c in trial_columns if c in ("run", "setting", "seed", "status", "model"))
    lines += _table([_header(c, comparison, metric, mode) for c in trial_columns], body, text)
    failed = [record for record in records if record.status == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [
            f"- `{r.trial.label}` ({r.version_dir}), exit {r.data.get('exit_code')}: {r.data.get('error')}"
            for r in failed
        ]
    not_run = [record.trial.label for record in records if record.status == "not run"]
    if not_run:
        lines += ["", f"Not run yet: {', '.join(f'`{name}`' for name in not_run)}."]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{path.stem}](figures/{path.name})\n" for path in figures]
    return "\n".join(lines).rstrip() + "\n"


def write_report(comparison: Comparison, records: list[Record], pretraining: list[Record] = ()) -> Path:
    """Write report.md, results.csv (a row per trial), summary.csv (a row per run), verdicts.csv (with a baseline),
    sweep.csv (with a sweep), pretraining.csv (with a pretraining run) and figures/ for `records`; returns report.md's
    path."""
    headline = next((r.data for r in records if r.data.get("headline_metric")), {})
    metric, mode = headline.get("headline_metric", "val/loss"), headline.get("headline_mode", "min")
    events = [read_events(record.version_dir) for record in records]
    rows = results(comparison, records, events, metric, mode)
    groups = group_trials(records, events, rows)
    selected = select_settings(groups, metric, mode)
    tests = [column_name(tag) for tag in single_number_test_metrics(events, metric)]
    by_length = [column_name(tag) for tag in length_test_metrics(events)]
    summary = summary_rows(selected, [f"best_{column_name(metric)}", *tests, "fit_seconds", *by_length])
    test_metric = "test/" + metric.removeprefix("val/")
    verdict_rows = verdicts(selected, comparison.baselines(), test_metric, mode)
    sweep = sweep_rows(groups, selected, metric)
    failed = {record.run for record in records if record.status == "failed"}
    folder = comparison.log_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(rows, folder / "results.csv")
    if summary:
        write_csv(summary, folder / "summary.csv")
    if verdict_rows:
        write_csv(verdict_rows, folder / "verdicts.csv")
    if any(row["setting"] for row in sweep):
        write_csv(sweep, folder / "sweep.csv")
    pretraining_lines, pretraining_rows = pretraining_section(comparison, list(pretraining))
    if pretraining_rows:
        write_csv(pretraining_rows, folder / "pretraining.csv")
    # along a curve, the per-run figures show its first point only: one panel or line per run and point is unreadable
    first = {r.name for r in comparison.runs if comparison.curve is None or r.point == comparison.curve[1][0]}
    shown = {run: group for run, group in selected.items() if run in first}
    figures = [
        curve_figure(shown, metric, comparison.target, failed, folder / "figures" / f"{column_name(metric)}.png"),
        length_figure(shown, folder / "figures" / "test_by_length.png"),
        confusion_figure(shown, folder / "figures" / "test_confusion_matrices.png"),
        points_figure(comparison, selected, test_metric, folder / "figures" / f"{column_name(test_metric)}_curve.png"),
    ]
    drawn = [path for path in figures if path is not None]
    report = folder / "report.md"
    report.write_text(
        markdown(comparison, records, rows, summary, verdict_rows, sweep, drawn, metric, mode, pretraining_lines)
    )
    return report
