"""The sections of a comparison's `report.md`, one function each, and `markdown`, which puts them together.

Each section function returns its lines (starting with an empty line, so that sections can be joined as they are);
one that has nothing to show returns [].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlparena.compare.columns import (
    CELLS,
    TEXT_COLUMNS,
    cell,
    cells_note,
    explanation,
    header,
    notes,
    number,
    verdict_text,
)
from nlparena.compare.config import Comparison, Record, Run, cli_value, point_name
from nlparena.compare.groups import BaselineVerdicts, RunSummary, column_name
from nlparena.compare.plain_summary import few_seeds_warning, in_short
from nlparena.compare.plots import BUCKETS


@dataclass
class Tables:
    """What report.md is written from: the comparison, its trials and their numbers."""

    comparison: Comparison
    records: list[Record]
    rows: list[dict[str, Any]]  # results.csv: a row per trial
    summary: list[RunSummary]  # a run's selected setting over its seeds
    verdicts: list[BaselineVerdicts]
    metric: str  # the validation headline metric
    mode: str  # "max" or "min"
    signatures: dict[str, str] = field(default_factory=dict)  # a sacreBLEU metric's signature, by logged name
    chance: dict[str, str] = field(default_factory=dict)  # run -> why it is at chance level, for those that are
    explained: set[str] = field(default_factory=set)  # the headers explained so far (each once, below its table)
    search: list[str] = field(default_factory=list)  # the search section's lines (`search_report.py`)

    @property
    def test_metric(self) -> str:
        """The metric the verdicts compare: the headline metric on the test split."""
        return "test/" + self.metric.removeprefix("val/")

    def notes(self, columns: dict[str, str]) -> list[str]:
        """The explanation of each column (header -> column) not explained above."""
        return notes({h: explanation(c, self.metric) for h, c in columns.items()}, self.explained)


def markdown(tables: Tables, pretraining: list[str], figures: list[Path]) -> str:
    """report.md: what it says in short; what was compared; per run the mean and CI over seeds; the verdicts against
    the baseline; the search; every trial's numbers; failed trials with their error; the figures."""
    lines = [
        *heading(tables),
        *pretraining,
        *results_table(tables),
        *curve_table(tables),
        *verdict_table(tables),
        *tables.search,
        *length_tables(tables),
        *trial_table(tables),
        *failed_runs([record for record in tables.records if record.status == "failed"]),
        *not_run(tables.records),
        *figure_links(figures),
    ]
    return "\n".join(lines).rstrip() + "\n"


def table(headers: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---" if i < text_columns else "---:" for i in range(len(headers))) + "|")
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def is_length_column(column: str) -> bool:
    return any(column.startswith(f"test_{key}_") for key in BUCKETS)


def given(run: Run, args: tuple[str, ...]) -> str:
    """`-c configs/x.yaml` `--model=Seq2Seq`: what a run is given, each in backticks."""
    return " ".join(f"`{a}`" for a in (*(f"-c {p}" for p in run.configs), *args))


# -- sections -------------------------------------------------------------------------------------------------------


def heading(tables: Tables) -> list[str]:
    """The title, where the config and logs are, a warning when there are too few seeds, what the report says in
    short, then the setup: shared settings, the metrics, the seeds, the baseline, the curve, what each run is given."""
    comparison = tables.comparison
    return [
        f"# Comparison `{comparison.name}`",
        "",
        f"Config `{comparison.source}`; logs in `{comparison.log_dir}` (`tensorboard --logdir {comparison.log_dir}`).",
        *few_seeds_warning(tables.summary),
        *in_short(tables.summary, tables.verdicts, tables.chance, tables.test_metric),
        "",
        "## Setup",
        "",
        *setup_lines(tables),
        *run_lines(comparison),
    ]


def metrics_line(tables: Tables) -> str:
    """Which metric picks each trial's checkpoint (and a search's setting), and which one the verdicts compare."""
    comparison, metric = tables.comparison, tables.metric
    better = "higher" if tables.mode == "max" else "lower"
    return (
        f"- metrics: each trial is tested at its checkpoint with the best `{metric}` ({better} is better)"
        + (f"; each run's setting is its search's best trial by `{metric}` (never test)" if comparison.search else "")
        + f"; verdicts compare `{tables.test_metric}` on the test split"
        + (f"; target {comparison.target:g} on `{metric}`" if comparison.target is not None else "")
        + (
            " (each trial stops at the first validation that reaches it, else trains all its epochs)"
            if comparison.stop_at_target
            else ""
        )
    )


def setup_lines(tables: Tables) -> list[str]:
    comparison = tables.comparison
    shared = comparison.shared_configs and ", ".join(f"`{p}`" for p in comparison.shared_configs)
    seeds = sorted({str(row["seed"]) for row in tables.rows if row["seed"] is not None})
    lines = [
        f"- shared configs: {shared or 'none'}",
        f"- shared args: {' '.join(f'`{a}`' for a in comparison.shared_args) or 'none'}",
        metrics_line(tables),
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
    return lines


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
    """Per run (its selected setting), in how many seeds it reached the target (with one) and each metric's mean,
    95 % CI and range over seeds; a run at chance level is marked."""
    summary = tables.summary
    columns = [c for c in (summary[0].columns if summary else {}) if not is_length_column(c)]
    swept = any(row.setting for row in summary)
    reached = tables.comparison.target is not None
    to_target = header("reached_target", tables.comparison, tables.metric, tables.mode)
    named = {
        "run": "run",
        **({"setting": "setting"} if swept else {}),
        "seeds": "seeds",
        **({to_target: "reached_target"} if reached else {}),
        **{header(c, tables.comparison, tables.metric, tables.mode): c for c in columns},
    }
    flagged = column_name(tables.test_metric)  # a run at chance level is marked on its test headline metric
    body = [
        [
            f"`{row.run}`",
            *([row.setting] if swept else []),
            str(row.seeds),
            *([f"{row.reached}/{row.seeds}"] if reached else []),
            *(
                cell(row.columns[c], c) + (" ⚠ at chance level" if c == flagged and row.run in tables.chance else "")
                for c in columns
            ),
        ]
        for row in summary
    ]
    once = cells_note(columns) if "cells" not in tables.explained else []
    tables.explained.add("cells")
    return ["", f"## Results ({CELLS})", "", *table(list(named), body, 2 if swept else 1), *once, *tables.notes(named)]


def curve_table(tables: Tables) -> list[str]:
    """With a curve: each run's test headline metric at every point of the curve (cells as in Results)."""
    comparison = tables.comparison
    if comparison.curve is None:
        return []
    key, values = comparison.curve
    column = column_name(tables.test_metric)
    found = {row.run: row for row in tables.summary}
    points = [point_name(key, value) for value in values]
    body = []
    for line in dict.fromkeys(run.line_name for run in comparison.runs):
        cells = [cell(found[n].columns.get(column), column) if (n := f"{line}/{p}") in found else "—" for p in points]
        body.append([f"`{line}`", *cells])
    headers = [p.split("=", 1)[1] for p in points]
    title = f"## Test {tables.metric.removeprefix('val/')} along `{key}` ({CELLS})"
    words = {"run": explanation("run", tables.metric)}
    words |= {h: f"`{tables.test_metric}` at `{key}` = {h}" for h in headers}
    return ["", title, "", *table(["run", *headers], body), *notes(words, tables.explained)]


def verdict_table(tables: Tables) -> list[str]:
    """Each run against its baseline: the paired bootstrap over test examples and Welch's t-test over seeds."""
    verdicts = tables.verdicts
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
    explained = {
        "baseline": "the run it is judged against",
        "paired bootstrap over test examples": "the test examples of every seed, resampled 10,000 times, the same "
        "ones for both runs (Koehn 2004): whether these trained models differ on these test examples",
        "Welch's t-test over seeds": "each seed's test value is one sample: whether training again with other seeds "
        "would reproduce the gap",
    }
    return [
        "",
        f"## Against {against} ({verdicts[0].metric})",
        "",
        *table([*headers, "Welch's t-test over seeds"], body, len(headers) - 1),
        *notes({h: explained[h] for h in [*headers[1:], "Welch's t-test over seeds"]}, tables.explained),
        "",
        "In each: Δ is the run's value minus the baseline's, with its 95 % CI and two-sided p-value; a difference is "
        "called better or worse only when its CI excludes 0.",
    ]


def length_tables(tables: Tables) -> list[str]:
    """Per source-length metric, a table of each run's test value per bucket (cells as in Results); the seeds' own
    values are in results.csv."""
    summary, lines = tables.summary, []
    for key, label in BUCKETS.items():
        prefix = f"test_{key}_"
        buckets = sorted({c.removeprefix(prefix) for row in summary for c in row.columns if c.startswith(prefix)})
        if not buckets:
            continue
        lines += ["", f"## Test {label} by source length ({CELLS})", ""]
        body = [[f"`{row.run}`", *(cell(row.columns[prefix + b], prefix + b) for b in buckets)] for row in summary]
        lines += table(["run", *buckets], body)
        words = f"test {label} of the examples whose source has that many tokens (both ends included)"
        lines += notes({"run": explanation("run", tables.metric), **{b: words for b in buckets}}, tables.explained)
    return lines


def trial_table(tables: Tables) -> list[str]:
    """Every trial's numbers (the per-length ones stay in results.csv: a column per bucket would be unreadable)."""
    rows, comparison = tables.rows, tables.comparison
    unused = {"log_dir"} | ({"steps_to_target"} if comparison.target is None else set())
    unused |= set() if any(row["setting"] for row in rows) else {"setting"}
    columns = [column for column in rows[0] if column not in unused and not is_length_column(column)]
    named = {header(c, comparison, tables.metric, tables.mode): c for c in columns}
    body = [[number(row[c], c) for c in columns] for row in rows]
    text_columns = sum(1 for c in columns if c in TEXT_COLUMNS)
    return ["", "## Every trial", "", *table(list(named), body, text_columns), *tables.notes(named)]


def failure_lines(failed: list[Record]) -> list[str]:
    return [
        f"- `{r.trial.label}` ({r.version_dir}), exit {r.data.get('exit_code')}: {r.data.get('error')}" for r in failed
    ]


def failed_runs(failed: list[Record]) -> list[str]:
    return ["", "## Failed runs", "", *failure_lines(failed)] if failed else []


def not_run(records: list[Record]) -> list[str]:
    names = [record.trial.label for record in records if record.status == "not run"]
    return ["", f"Not run yet: {', '.join(f'`{name}`' for name in names)}."] if names else []


BAND = "per run the mean over its seeds, with a band from the lowest to the highest seed"


def caption(figure: Path) -> str:
    """What a figure of `draw_figures` shows, for the line below it."""
    if figure.stem == "test_by_length":
        return f"Test metrics by source length in tokens: {BAND}."
    if figure.stem == "test_confusion_matrices":
        return "Each run's test confusion matrix summed over its seeds, each row divided by its true class's count."
    if figure.stem.endswith("_curve"):
        return f"The test headline metric at each value of the curve's key: {BAND}."
    first = "0 is the first, as in checkpoint names `best-epoch000-…`"
    held = "a seed that stopped early (at the target) is held at its last value"
    return f"The validation headline metric after each epoch ({first}): {BAND}; {held}."


def figure_links(figures: list[Path]) -> list[str]:
    links = [f"![{path.stem}](figures/{path.name})\n\n{caption(path)}\n" for path in figures]
    return ["", "## Figures", "", *links] if figures else []


def pretraining_lines(tables: Tables, columns: list[str]) -> list[str]:
    """The pretraining trials (`tables` of their own): their headline and test metrics over seeds and per seed, and
    those that failed."""
    run = tables.comparison.pretraining
    named = {header(c, tables.comparison, tables.metric, tables.mode): c for c in columns}
    over_seeds = [[CELLS, str(r.seeds), *(cell(r.columns[c], c) for c in columns)] for r in tables.summary]
    per_seed = [[str(r["seed"]), r["status"], *(number(r[c], c) for c in columns)] for r in tables.rows]
    once = cells_note(columns) if "cells" not in tables.explained else []
    tables.explained.add("cells")
    return [
        "",
        f"## Pretraining `{run.name}` (once per seed; `{{pretraining}}` in a run's args is its checkpoint)",
        "",
        given(run, run.args),
        "",
        *table(["", "seeds", *named], over_seeds),
        *once,
        *tables.notes({"seeds": "seeds", **named}),
        "",
        *table(["seed", "status", *named], per_seed, 2),
        *tables.notes({"seed": "seed", "status": "status"}),
        *failure_lines([record for record in tables.records if record.status == "failed"]),
    ]
