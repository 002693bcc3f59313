"""The sections of a comparison's `report.md`, one function each, and `markdown`, which puts them together.

Each section function returns its lines (starting with an empty line, so that sections can be joined as they are);
one that has nothing to show returns [].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlparena.compare.config import Comparison, Record, Run, cli_value, point_name
from nlparena.compare.groups import BaselineVerdicts, RunSummary, column_name
from nlparena.compare.plots import BUCKETS
from nlparena.compare.statistics import Summary, Verdict

TEXT_COLUMNS = ("run", "setting", "seed", "status", "model")  # left-aligned in the trial table
MEAN_CI = "mean ± half the 95 % CI over seeds, [lowest, highest]"


@dataclass
class Tables:
    """What report.md is written from: the comparison, its trials and their numbers."""

    comparison: Comparison
    records: list[Record]
    rows: list[dict[str, Any]]  # results.csv: a row per trial
    summary: list[RunSummary]  # a run's selected setting over its seeds
    verdicts: list[BaselineVerdicts]
    sweep: list[dict[str, Any]]  # sweep.csv: a row per run and setting
    metric: str  # the validation headline metric
    mode: str  # "max" or "min"
    signatures: dict[str, str] = field(default_factory=dict)  # a sacreBLEU metric's signature, by logged name


def markdown(tables: Tables, pretraining: list[str], figures: list[Path]) -> str:
    """report.md: what was compared; per run mean ± CI over seeds; the verdicts against the baseline; the sweep;
    every trial's numbers; failed trials with their error; the figures."""
    lines = [
        *heading(tables),
        *pretraining,
        *results_table(tables),
        *curve_table(tables.comparison, tables.summary, tables.metric),
        *verdict_table(tables.verdicts),
        *sweep_table(tables.sweep, tables.metric),
        *length_tables(tables.summary),
        *trial_table(tables),
        *failed_runs([record for record in tables.records if record.status == "failed"]),
        *not_run(tables.records),
        *figure_links(figures),
    ]
    return "\n".join(lines).rstrip() + "\n"


# -- cells ----------------------------------------------------------------------------------------------------------


def number(value: Any, column: str) -> str:
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


def header(column: str, comparison: Comparison, metric: str, mode: str) -> str:
    names = {
        "fit_seconds": "fit (s)",
        "samples_per_second": "samples/s",
        "tokens_per_second": "tokens/s",
        "steps_to_target": f"steps to {metric} {'≥' if mode == 'max' else '≤'} {comparison.target}",
        f"best_{column_name(metric)}": f"best {metric}",
    }
    return names.get(column, column.replace("test_", "test/", 1) if column.startswith("test_") else column)


def table(headers: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" if i < text_columns else "---:" for i in range(len(headers))) + "|")
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def mean_ci(stats: Summary | None) -> str:
    """`0.912 ± 0.021 [0.88, 0.94]`: mean ± half the 95 % CI, [min, max]; the mean alone for one seed."""
    if stats is None:
        return "—"
    if math.isnan(stats.ci_low):  # one seed: no interval
        return f"{stats.mean:.3f}"
    return f"{stats.mean:.3f} ± {(stats.ci_high - stats.ci_low) / 2:.3f} [{stats.min:.3f}, {stats.max:.3f}]"


def verdict_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return "—"
    return (
        f"{verdict.verdict} (Δ {verdict.difference:+.3f}, 95 % CI [{verdict.ci_low:+.3f}, {verdict.ci_high:+.3f}], "
        f"p = {verdict.p_value:.3g})"
    )


def is_length_column(column: str) -> bool:
    return any(column.startswith(f"test_{key}_") for key in BUCKETS)


def given(run: Run, args: tuple[str, ...]) -> str:
    """`-c configs/x.yaml` `--model=Seq2Seq`: what a run is given, each in backticks."""
    return " ".join(f"`{a}`" for a in (*(f"-c {p}" for p in run.configs), *args))


# -- sections -------------------------------------------------------------------------------------------------------


def heading(tables: Tables) -> list[str]:
    """The title, where the config and logs are, the shared settings, the headline metric, the seeds, the baseline,
    the curve, and what each run is given."""
    comparison, metric = tables.comparison, tables.metric
    shared = comparison.shared_configs and ", ".join(f"`{p}`" for p in comparison.shared_configs)
    seeds = sorted({str(row["seed"]) for row in tables.rows if row["seed"] is not None})
    lines = [
        f"# Comparison `{comparison.name}`",
        "",
        f"Config `{comparison.source}`; logs in `{comparison.log_dir}` (`tensorboard --logdir {comparison.log_dir}`).",
        "",
        f"- shared configs: {shared or 'none'}",
        f"- shared args: {' '.join(f'`{a}`' for a in comparison.shared_args) or 'none'}",
        f"- headline metric: `{metric}` ({'higher' if tables.mode == 'max' else 'lower'} is better)"
        + (f", target {comparison.target:g}" if comparison.target is not None else ""),
        f"- seeds: {', '.join(seeds) or 'as configured'}",
    ]
    if comparison.baseline:
        lines.append(f"- baseline: `{comparison.baseline}`")
    if tables.signatures:
        scores = ", ".join(f"`{name}` is `{signature}`" for name, signature in tables.signatures.items())
        lines.append(f"- sacreBLEU on detokenized test outputs: {scores}")
    if comparison.curve is not None:
        key, values = comparison.curve
        lines.append(f"- curve: every run at `{key}` = {', '.join(cli_value(v) for v in values)}")
    return lines + run_lines(comparison)


def run_lines(comparison: Comparison) -> list[str]:
    """A line per run (per entry along a curve): what it is given, and its baseline where it has its own."""
    first: dict[str, Run] = {}
    for run in comparison.runs:
        first.setdefault(run.line_name, run)
    lines = []
    for name, run in first.items():
        args = run.args[:-1] if run.point is not None else run.args  # the curve's value is said once, above
        baseline = run.baseline_line
        against = f" (against `{baseline}`)" if baseline and baseline != comparison.baseline else ""
        lines.append(f"- `{name}`: {given(run, args) or 'the shared settings only'}{against}")
    return lines


def results_table(tables: Tables) -> list[str]:
    """Per run (its selected setting), each metric's mean ± half the 95 % CI over seeds."""
    summary = tables.summary
    columns = [c for c in (summary[0].columns if summary else {}) if not is_length_column(c)]
    swept = any(row.setting for row in summary)
    headers = [
        "run",
        *(["setting"] if swept else []),
        "seeds",
        *(header(c, tables.comparison, tables.metric, tables.mode) for c in columns),
    ]
    body = [
        [f"`{row.run}`", *([row.setting] if swept else []), str(row.seeds), *(mean_ci(row.columns[c]) for c in columns)]
        for row in summary
    ]
    return ["", f"## Results ({MEAN_CI})", "", *table(headers, body, 2 if swept else 1)]


def curve_table(comparison: Comparison, summary: list[RunSummary], metric: str) -> list[str]:
    """With a curve: each run's test headline metric at every point of the curve (mean ± half the 95 % CI over
    seeds, [lowest, highest])."""
    if comparison.curve is None:
        return []
    key, values = comparison.curve
    column = column_name("test/" + metric.removeprefix("val/"))
    found = {row.run: row for row in summary}
    points = [point_name(key, value) for value in values]
    body = []
    for line in dict.fromkeys(run.line_name for run in comparison.runs):
        cells = [mean_ci(found[name].columns.get(column)) if (name := f"{line}/{p}") in found else "—" for p in points]
        body.append([f"`{line}`", *cells])
    title = f"## Test {metric.removeprefix('val/')} along `{key}` ({MEAN_CI})"
    return ["", title, "", *table(["run", *(p.split("=", 1)[1] for p in points)], body)]


def verdict_table(verdicts: list[BaselineVerdicts]) -> list[str]:
    """Each run against its baseline: the paired bootstrap over test examples and Welch's t-test over seeds."""
    if not verdicts:
        return []
    baselines = sorted({pair.baseline for pair in verdicts})
    one = len(baselines) == 1  # named in the heading; else a column
    against = f"the baseline `{baselines[0]}`" if one else "each run's baseline"
    body = [
        [
            f"`{pair.run}`",
            *([] if one else [f"`{pair.baseline}`"]),
            verdict_text(pair.bootstrap),
            verdict_text(pair.seeds),
        ]
        for pair in verdicts
    ]
    headers = ["run", *([] if one else ["baseline"]), "paired bootstrap over test examples"]
    return [
        "",
        f"## Against {against} ({verdicts[0].metric})",
        "",
        "Paired bootstrap over the test examples of every seed (Koehn 2004), and Welch's t-test over the seeds' "
        "test values; a difference is reported as better or worse only when its 95 % CI excludes 0.",
        "",
        *table([*headers, "Welch's t-test over seeds"], body, len(headers) - 1),
    ]


def sweep_table(sweep: list[dict[str, Any]], metric: str) -> list[str]:
    """With a sweep: every setting's mean validation headline metric, and the one each run keeps."""
    if not any(row["setting"] for row in sweep):
        return []
    body = [
        [f"`{r['run']}`", r["setting"], str(r["seeds"]), number(r["mean"], ""), "selected" if r["selected"] else ""]
        for r in sweep
    ]
    title = f"## Sweep (each run keeps its setting with the best mean {metric}; test is never used)"
    return ["", title, "", *table(["run", "setting", "seeds", f"mean best {metric}", ""], body, 2)]


def length_tables(summary: list[RunSummary]) -> list[str]:
    """Per source-length metric, a table of each run's test value per bucket (mean ± half the 95 % CI over seeds,
    [lowest, highest]); the seeds' own values are in results.csv."""
    lines: list[str] = []
    for key, label in BUCKETS.items():
        prefix = f"test_{key}_"
        buckets = sorted({c.removeprefix(prefix) for row in summary for c in row.columns if c.startswith(prefix)})
        if not buckets:
            continue
        lines += ["", f"## Test {label} by source length ({MEAN_CI})", ""]
        body = [[f"`{row.run}`", *(mean_ci(row.columns[prefix + bucket]) for bucket in buckets)] for row in summary]
        lines += table(["run", *buckets], body)
    return lines


def trial_table(tables: Tables) -> list[str]:
    """Every trial's numbers (the per-length ones stay in results.csv: a column per bucket would be unreadable)."""
    rows, comparison = tables.rows, tables.comparison
    unused = {"log_dir"} | ({"steps_to_target"} if comparison.target is None else set())
    unused |= set() if any(row["setting"] for row in rows) else {"setting"}
    columns = [column for column in rows[0] if column not in unused and not is_length_column(column)]
    headers = [header(c, comparison, tables.metric, tables.mode) for c in columns]
    body = [[number(row[c], c) for c in columns] for row in rows]
    return ["", "## Every trial", "", *table(headers, body, sum(1 for c in columns if c in TEXT_COLUMNS))]


def failure_lines(failed: list[Record]) -> list[str]:
    return [
        f"- `{r.trial.label}` ({r.version_dir}), exit {r.data.get('exit_code')}: {r.data.get('error')}" for r in failed
    ]


def failed_runs(failed: list[Record]) -> list[str]:
    return ["", "## Failed runs", "", *failure_lines(failed)] if failed else []


def not_run(records: list[Record]) -> list[str]:
    names = [record.trial.label for record in records if record.status == "not run"]
    return ["", f"Not run yet: {', '.join(f'`{name}`' for name in names)}."] if names else []


def figure_links(figures: list[Path]) -> list[str]:
    return ["", "## Figures", "", *(f"![{path.stem}](figures/{path.name})\n" for path in figures)] if figures else []


def pretraining_lines(tables: Tables, columns: list[str]) -> list[str]:
    """The pretraining trials (`tables` of their own): their headline and test metrics over seeds and per seed, and
    those that failed."""
    run = tables.comparison.pretraining
    headers = [header(c, tables.comparison, tables.metric, tables.mode) for c in columns]
    over_seeds = [
        ["mean ± half CI [min, max]", str(r.seeds), *(mean_ci(r.columns[c]) for c in columns)] for r in tables.summary
    ]
    per_seed = [[str(r["seed"]), r["status"], *(number(r[c], c) for c in columns)] for r in tables.rows]
    return [
        "",
        f"## Pretraining `{run.name}` (once per seed; `{{pretraining}}` in a run's args is its checkpoint)",
        "",
        given(run, run.args),
        "",
        *table(["", "seeds", *headers], over_seeds),
        "",
        *table(["seed", "status", *headers], per_seed, 2),
        *failure_lines([record for record in tables.records if record.status == "failed"]),
    ]
