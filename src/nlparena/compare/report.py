"""The report of `nlparena compare`: `report.md`, `results.csv` and `figures/*.png` in `logs/compare/NAME/`,
built from each run's TensorBoard event files (read by `nlparena.events`) and its `compare.json`.

Per trial (run x setting x seed): parameters, fit time, training throughput, steps to reach the target, best
validation headline metric, test metrics. Per run (its setting with the best mean validation metric, when it sweeps):
mean, 95 % confidence interval and min / max over seeds, and against the `baseline` run a verdict (better, worse, no
detectable difference) from a paired bootstrap over test examples and from Welch's t-test over seeds. Figures: the
validation headline metric against the step (mean over seeds with a band), exact match (and token accuracy) per
source-length bucket for translation, confusion matrices side by side for classification.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlparena.callbacks.test_outputs import FILE_NAME as TEST_OUTPUTS
from nlparena.compare.config import Comparison, Record
from nlparena.compare.statistics import STATISTICS, Verdict, across_seeds, paired_bootstrap, summarize
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


def single_number_test_metrics(events: list[RunEvents], headline: str) -> list[str]:
    """The single-number test metrics any run logged (`test/exact_match`, not `test/f1/<class>`), headline first."""
    tags = {tag for run in events for tag in run.scalars if tag.count("/") == 1 and tag.startswith("test/")}
    first = "test/" + headline.removeprefix("val/")
    return sorted(tags, key=lambda tag: (tag != first, tag))


def results(
    comparison: Comparison, records: list[Record], events: list[RunEvents], metric: str, mode: str
) -> list[dict[str, Any]]:
    """One row per trial (run, setting, seed): the numbers of results.csv (None where a trial has none)."""
    rows = []
    tests = single_number_test_metrics(events, metric)
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


# -- seeds, the sweep and the baseline ---------------------------------------------------------------------------


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
    """Each run's setting with the best mean (over seeds) of its best validation headline metric: the sweep picks
    by validation, never by test. A run whose settings have no value keeps its first."""
    column = f"best_{_column(metric)}"
    chosen: dict[str, Group] = {}
    for group in groups:
        values = group.values(column)
        if group.run not in chosen:
            chosen[group.run] = group
            continue
        held = chosen[group.run].values(column)
        if values and (not held or _better(_mean(values), _mean(held), mode)):
            chosen[group.run] = group
    return chosen


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def summary_rows(selected: dict[str, Group], columns: list[str]) -> list[dict[str, Any]]:
    """Per run (its selected setting): seeds, and for each column mean, 95 % CI and min / max over seeds."""
    rows = []
    for run, group in selected.items():
        row: dict[str, Any] = {"run": run, "setting": group.setting, "seeds": len(group.finished())}
        for column in columns:
            values = group.values(column)
            stats = summarize(values) if values else None
            for name in ("mean", "ci_low", "ci_high", "min", "max"):
                row[f"{column}_{name}"] = None if stats is None else getattr(stats, name)
        rows.append(row)
    return rows


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


def verdicts(selected: dict[str, Group], baseline: str, test_metric: str, mode: str) -> list[dict[str, Any]]:
    """Each run against the baseline on the test headline metric: the paired bootstrap over test examples (Koehn
    2004) and Welch's t-test over the seeds' test values."""
    base = selected.get(baseline)
    if base is None:
        return []
    name = test_metric.removeprefix("test/")
    statistic = STATISTICS.get(name)
    rows = []
    for run, group in selected.items():
        if run == baseline:
            continue
        row: dict[str, Any] = {"run": run, "baseline": baseline, "metric": test_metric}
        paired = paired_outputs(group, base, name) if statistic else None
        if paired is not None:
            cand, base_out, refs = paired
            v = paired_bootstrap(cand, base_out, refs, statistic, mode)
            row.update(_verdict_columns("bootstrap", v))
        seeds_a, seeds_b = group.values(_column(test_metric)), base.values(_column(test_metric))
        if len(seeds_a) >= 2 and len(seeds_b) >= 2:
            row.update(_verdict_columns("seeds", across_seeds(seeds_a, seeds_b, mode)))
        rows.append(row)
    return rows


def _verdict_columns(prefix: str, verdict: Verdict) -> dict[str, Any]:
    return {
        f"{prefix}_verdict": verdict.verdict,
        f"{prefix}_difference": verdict.difference,
        f"{prefix}_ci_low": verdict.ci_low,
        f"{prefix}_ci_high": verdict.ci_high,
        f"{prefix}_p_value": verdict.p_value,
        f"{prefix}_test": verdict.test,
    }


def sweep_rows(groups: list[Group], selected: dict[str, Group], metric: str) -> list[dict[str, Any]]:
    """Every setting of a swept run: its validation headline metric over seeds, and whether it was selected."""
    column = f"best_{_column(metric)}"
    rows = []
    for group in groups:
        values = group.values(column)
        stats = summarize(values) if values else None
        rows.append(
            {
                "run": group.run,
                "setting": group.setting,
                "seeds": len(values),
                "mean": None if stats is None else stats.mean,
                "ci_low": None if stats is None else stats.ci_low,
                "ci_high": None if stats is None else stats.ci_high,
                "selected": selected.get(group.run) is group,
            }
        )
    return rows


# -- figures --------------------------------------------------------------------------------------------------------


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _mean_and_band(series: list[list[tuple[Any, float]]]) -> tuple[list[Any], list[float], list[float], list[float]]:
    """x values every series has, and at each the mean, min and max over the series."""
    common = set.intersection(*(set(x for x, _ in s) for s in series))
    xs = sorted(common)
    values = [[dict(s)[x] for s in series] for x in xs]
    return xs, [_mean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def curve_figure(
    selected: dict[str, Group], metric: str, target: float | None, failed: set[str], path: Path
) -> Path | None:
    """The validation headline metric against the step: per run the mean over its seeds, with a band from the
    lowest to the highest seed (a failed trial's curve up to its crash is left out of the mean)."""
    from matplotlib.figure import Figure

    drawn = {}
    for run, group in selected.items():
        series = [group.events[i].scalars[metric] for i in group.finished() if group.events[i].scalars.get(metric)]
        if not series:
            series = [e.scalars[metric] for e in group.events if e.scalars.get(metric)]
        if series:
            drawn[run] = series
    if not drawn:
        return None
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for run, series in drawn.items():
        xs, mean, low, high = _mean_and_band(series)
        label = f"{run} (failed)" if run in failed else run
        label += f" (mean of {len(series)} seeds)" if len(series) > 1 else ""
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=label)
        if len(series) > 1:
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training (band: lowest to highest seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def length_figure(selected: dict[str, Group], path: Path) -> Path | None:
    """Translation: test exact match (and token accuracy) per source-length bucket, per run the mean over seeds with
    a band from the lowest to the highest seed."""
    from matplotlib.figure import Figure

    panels: dict[str, dict[str, list[list[tuple[str, float]]]]] = {}
    for key in BUCKETS:
        for run, group in selected.items():
            series = [sorted(b.items()) for i in group.finished() if (b := _buckets(group.events[i], f"test/{key}/"))]
            if series:
                panels.setdefault(key, {})[run] = series
    if not panels:
        return None
    fig = Figure(figsize=(6 * len(panels), 4), layout="constrained")
    for ax, (key, runs) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True):
        for run, series in runs.items():
            xs, mean, low, high = _mean_and_band(series)
            (line,) = ax.plot(xs, mean, marker="o", label=run)
            if len(series) > 1:
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
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


def confusion_figure(selected: dict[str, Group], path: Path) -> Path | None:
    """Classification: each run's test confusion matrix (summed over its seeds) normalised by true class, side by
    side."""
    from matplotlib.figure import Figure

    matrices = {}
    for run, group in selected.items():
        found = [m for i in group.finished() if (m := group.events[i].confusion("test")) is not None]
        if found:
            matrices[run] = (found[0][0], sum(counts for _, counts in found))
    if not matrices:
        return None
    C = max(counts.shape[0] for _, counts in matrices.values())
    fig = Figure(figsize=(1.0 + (3.0 + 0.9 * C) * len(matrices), 1.5 + 0.9 * C), layout="constrained")
    for ax, (run, (names, counts)) in zip(
        fig.subplots(1, len(matrices), squeeze=False)[0], matrices.items(), strict=True
    ):
        draw_matrix(fig, ax, row_rates(counts.float()), names, run, "{:.2f}")
    fig.suptitle("test confusion matrices (all seeds), normalised by true class", fontsize=10)
    return _save(fig, path)


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
        f"best_{_column(metric)}": f"best {metric}",
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
    for run in comparison.runs:
        given = [*(f"-c {p}" for p in run.configs), *run.args]
        lines.append(f"- `{run.name}`: {' '.join(f'`{a}`' for a in given) or 'the shared settings only'}")
    metric_columns = [c for c in (summary[0] if summary else {}) if c.endswith("_mean")]
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
    if verdict_rows:
        test_metric = verdict_rows[0]["metric"]
        lines += ["", f"## Against the baseline `{comparison.baseline}` ({test_metric})", ""]
        lines += [
            "Paired bootstrap over the test examples of every seed (Koehn 2004), and Welch's t-test over the seeds' "
            "test values; a difference is reported as better or worse only when its 95 % CI excludes 0.",
            "",
        ]
        body = [[f"`{r['run']}`", _verdict_text(r, "bootstrap"), _verdict_text(r, "seeds")] for r in verdict_rows]
        lines += _table(["run", "paired bootstrap over test examples", "Welch's t-test over seeds"], body)
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
    unused = {"log_dir"} | ({"steps_to_target"} if comparison.target is None else set())
    unused |= set() if any(row["setting"] for row in rows) else {"setting"}
    trial_columns = [column for column in rows[0] if column not in unused]
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


def write_report(comparison: Comparison, records: list[Record]) -> Path:
    """Write report.md, results.csv (a row per trial), summary.csv (a row per run), verdicts.csv (with a baseline),
    sweep.csv (with a sweep) and figures/ for `records`; returns report.md's path."""
    headline = next((r.data for r in records if r.data.get("headline_metric")), {})
    metric, mode = headline.get("headline_metric", "val/loss"), headline.get("headline_mode", "min")
    events = [read_events(record.version_dir) for record in records]
    rows = results(comparison, records, events, metric, mode)
    groups = group_trials(records, events, rows)
    selected = select_settings(groups, metric, mode)
    tests = [_column(tag) for tag in single_number_test_metrics(events, metric)]
    summary = summary_rows(selected, [f"best_{_column(metric)}", *tests, "fit_seconds"])
    test_metric = "test/" + metric.removeprefix("val/")
    verdict_rows = verdicts(selected, comparison.baseline, test_metric, mode) if comparison.baseline else []
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
    figures = [
        curve_figure(selected, metric, comparison.target, failed, folder / "figures" / f"{_column(metric)}.png"),
        length_figure(selected, folder / "figures" / "test_by_length.png"),
        confusion_figure(selected, folder / "figures" / "test_confusion_matrices.png"),
    ]
    drawn = [path for path in figures if path is not None]
    report = folder / "report.md"
    report.write_text(markdown(comparison, records, rows, summary, verdict_rows, sweep, drawn, metric, mode))
    return report
