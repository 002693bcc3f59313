"""The report of `nlparena compare`: `report.md`, `results.csv` and `figures/*.png` in `logs/compare/NAME/`,
built from each run's TensorBoard event files (read by `nlparena.events`) and its `compare.json`.

Per run: parameters, fit time, training throughput, steps to reach the target, best validation headline metric,
test metrics; figures: the validation headline metric against the step for every run, exact match (and token
accuracy) per source-length bucket for translation, confusion matrices side by side for classification.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from nlparena.compare.config import Comparison, Record
from nlparena.events import RunEvents, read_events
from nlparena.figures import draw_matrix, row_rates

BUCKETS = {"exact_match_by_length": "exact match", "token_accuracy_by_length": "token accuracy"}  # TranslationModel's


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


def _column(tag: str) -> str:
    return tag.replace("/", "_")


def single_number_test_metrics(events: dict[str, RunEvents], headline: str) -> list[str]:
    """The single-number test metrics any run logged (`test/exact_match`, not `test/f1/<class>`), headline first."""
    tags = {tag for run in events.values() for tag in run.scalars if tag.count("/") == 1 and tag.startswith("test/")}
    first = "test/" + headline.removeprefix("val/")
    return sorted(tags, key=lambda tag: (tag != first, tag))


def results(
    comparison: Comparison, records: list[Record], events: dict[str, RunEvents], metric: str, mode: str
) -> list[dict[str, Any]]:
    """One row per run: the numbers of results.csv (None where a run has none)."""
    rows = []
    tests = single_number_test_metrics(events, metric)
    for record in records:
        run = events[record.run]
        parameters = run.last("compare/parameters")
        series = run.scalars.get(metric, [])
        row = {
            "run": record.run,
            "status": record.status,
            "model": record.data.get("model"),
            "parameters": None if parameters is None else round(parameters),  # logged as float32
            "fit_seconds": run.last("compare/fit_seconds"),
            "samples_per_second": run.last("compare/samples_per_second"),
            "tokens_per_second": run.last("compare/tokens_per_second"),
            "steps_to_target": steps_to(series, comparison.target, mode),
            f"best_{_column(metric)}": best_of(series, mode),
        }
        row.update({_column(tag): run.last(tag) for tag in tests})
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


# -- figures --------------------------------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def curve_figure(
    events: dict[str, RunEvents], metric: str, target: float | None, failed: set[str], path: Path
) -> Path | None:
    """The validation headline metric against the step, one line per run (a failed run's up to its crash)."""
    from matplotlib.figure import Figure

    drawn = {run: e.scalars[metric] for run, e in events.items() if e.scalars.get(metric)}
    if not drawn:
        return None
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for run, series in drawn.items():
        label = f"{run} (failed)" if run in failed else run
        ax.plot([s for s, _ in series], [v for _, v in series], marker="o", markersize=3, label=label)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def length_figure(events: dict[str, RunEvents], path: Path) -> Path | None:
    """Translation: test exact match (and token accuracy) per source-length bucket, one line per run."""
    from matplotlib.figure import Figure

    panels = {
        key: {run: _buckets(e, f"test/{key}/") for run, e in events.items() if _buckets(e, f"test/{key}/")}
        for key in BUCKETS
    }
    panels = {key: runs for key, runs in panels.items() if runs}
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    for ax, (key, runs) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True):
        names = sorted({bucket for buckets in runs.values() for bucket in buckets})
        for run, buckets in runs.items():
            ax.plot(names, [buckets.get(name, float("nan")) for name in names], marker="o", label=run)
        ax.set_xlabel("source length")
        ax.set_ylabel(f"test {BUCKETS[key]}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"test {BUCKETS[key]} by source length", fontsize=10)
        ax.tick_params(axis="x", rotation=45)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _buckets(events: RunEvents, prefix: str) -> dict[str, float]:
    """Bucket name ('03-04') -> last value, of the scalars under `prefix`."""
    return {tag.removeprefix(prefix): s[-1][1] for tag, s in events.scalars.items() if tag.startswith(prefix) and s}


def confusion_figure(events: dict[str, RunEvents], path: Path) -> Path | None:
    """Classification: each run's test confusion matrix normalised by true class, side by side."""
    from matplotlib.figure import Figure

    matrices = {run: matrix for run, e in events.items() if (matrix := e.confusion("test")) is not None}
    if not matrices:
        return None
    C = max(counts.shape[0] for _, counts in matrices.values())
    fig = Figure(figsize=(1.0 + (3.0 + 0.9 * C) * len(matrices), 1.5 + 0.9 * C), layout="constrained")
    for ax, (run, (names, counts)) in zip(
        fig.subplots(1, len(matrices), squeeze=False)[0], matrices.items(), strict=True
    ):
        draw_matrix(fig, ax, row_rates(counts.float()), names, run, "{:.2f}")
    fig.suptitle("test confusion matrices, normalised by true class", fontsize=10)
    return _save(fig, path)


# -- report.md ------------------------------------------------------------------------------------------------------


def _number(value: Any, column: str) -> str:
    """Rounded for reading: parameters with separators, seconds and rates whole, metrics to 3 decimals."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if column == "parameters":
        return f"{value:,}"
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
        f"best_{_column(metric)}": f"best {metric}",
    }
    return names.get(column, column.replace("test_", "test/", 1) if column.startswith("test_") else column)


def markdown(
    comparison: Comparison,
    records: list[Record],
    rows: list[dict[str, Any]],
    figures: list[Path],
    metric: str,
    mode: str,
) -> str:
    """report.md: what was compared, the table, failed runs with their error, the figures."""
    shared = comparison.shared_configs and ", ".join(f"`{p}`" for p in comparison.shared_configs)
    lines = [
        f"# Comparison `{comparison.name}`",
        "",
        f"Config `{comparison.source}`; logs in `{comparison.log_dir}` (`tensorboard --logdir {comparison.log_dir}`).",
        "",
        f"- shared configs: {shared or 'none'}",
        f"- shared args: {' '.join(f'`{a}`' for a in comparison.shared_args) or 'none'}",
        f"- headline metric: `{metric}` ({'higher' if mode == 'max' else 'lower'} is better)"
        + (f", target {comparison.target:g}" if comparison.target is not None else ""),
    ]
    for run in comparison.runs:
        given = [*(f"-c {p}" for p in run.configs), *run.args]
        lines.append(f"- `{run.name}`: {' '.join(f'`{a}`' for a in given) or 'the shared settings only'}")
    unused = {"log_dir"} | ({"steps_to_target"} if comparison.target is None else set())
    columns = [column for column in rows[0] if column not in unused]
    lines += ["", "| " + " | ".join(_header(c, comparison, metric, mode) for c in columns) + " |"]
    lines.append("|" + "|".join("---" if c in ("run", "status", "model") else "---:" for c in columns) + "|")
    lines += ["| " + " | ".join(_number(row[c], c) for c in columns) + " |" for row in rows]
    failed = [record for record in records if record.status == "failed"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [
            f"- `{r.run}` ({r.version_dir}), exit {r.data.get('exit_code')}: {r.data.get('error')}" for r in failed
        ]
    not_run = [record.run for record in records if record.status == "not run"]
    if not_run:
        lines += ["", f"Not run yet: {', '.join(f'`{name}`' for name in not_run)}."]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{path.stem}](figures/{path.name})\n" for path in figures]
    return "\n".join(lines).rstrip() + "\n"


def write_report(comparison: Comparison, records: list[Record]) -> Path:
    """Write report.md, results.csv and figures/ for `records` (one per run); returns report.md's path."""
    headline = next((r.data for r in records if r.data.get("headline_metric")), {})
    metric, mode = headline.get("headline_metric", "val/loss"), headline.get("headline_mode", "min")
    events = {record.run: read_events(record.version_dir) for record in records}
    rows = results(comparison, records, events, metric, mode)
    failed = {record.run for record in records if record.status == "failed"}
    folder = comparison.log_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(rows, folder / "results.csv")
    figures = [
        curve_figure(events, metric, comparison.target, failed, folder / "figures" / f"{_column(metric)}.png"),
        length_figure(events, folder / "figures" / "test_by_length.png"),
        confusion_figure(events, folder / "figures" / "test_confusion_matrices.png"),
    ]
    drawn = [path for path in figures if path is not None]
    report = folder / "report.md"
    report.write_text(markdown(comparison, records, rows, drawn, metric, mode))
    return report
