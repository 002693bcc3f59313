"""The figures of a comparison's report, per run over its seeds: the validation headline metric against the epoch,
test metrics per source length (translation), test confusion matrices (classification)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlparena.compare.config import Comparison
from nlparena.compare.groups import Group, column_name, mean_of
from nlparena.events import RunEvents
from nlparena.figures import draw_matrix, row_rates

# TranslationModel's per source-length metrics
BUCKETS = {
    "exact_match_by_length": "exact match",
    "token_accuracy_by_length": "token accuracy",
    "bleu_by_length": "BLEU",
}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _mean_and_band(series: list[list[tuple[Any, float]]]) -> tuple[list[Any], list[float], list[float], list[float]]:
    """x values every series has, and at each the mean, min and max over the series."""
    common = set.intersection(*(set(x for x, _ in s) for s in series))
    xs = sorted(common)
    values = [[dict(s)[x] for s in series] for x in xs]
    return xs, [mean_of(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def held(series: list[list[tuple[Any, float]]]) -> tuple[list[list[tuple[Any, float]]], bool]:
    """Each series carried on to the longest one's last x at its own last value, and whether any was: a finished seed
    that stopped early (at the comparison's target) stays in the mean where the others go on, instead of the mean
    ending at the first seed's stop."""
    xs = sorted({x for s in series for x, _ in s})
    out = [s + [(x, s[-1][1]) for x in xs if x > s[-1][0]] if s else s for s in series]
    return out, any(len(a) != len(b) for a, b in zip(out, series, strict=True))


EPOCH_AXIS = "epoch (0 is the first, as in checkpoint names: best-epoch000-…)"
BAND = "band: lowest to highest seed"


def per_epoch(series: list[tuple[int, float]], epochs: list[tuple[int, float]]) -> list[tuple[int, float]] | None:
    """Validation points (step, value) as (epoch, value), the epoch as Lightning counts it in its `epoch` logs at the
    same steps and in checkpoint names (0 for the first); None when a point has no epoch beside it or two points
    share one (validation more than once an epoch)."""
    at = dict(epochs)
    if any(step not in at for step, _ in series):
        return None
    points = [(int(at[step]), value) for step, value in series]
    return points if len({x for x, _ in points}) == len(points) else None


def curve_figure(
    selected: dict[str, Group], metric: str, target: float | None, failed: set[str], path: Path
) -> Path | None:
    """The validation headline metric against the epoch (the step where a run validates more than once an epoch):
    per run the mean over its seeds, with a band from the lowest to the highest seed (a failed trial's curve up to
    its crash is left out of the mean; a finished seed that stopped early is held at its last value). Epochs, so that
    runs with other batch sizes line up at equal data seen."""
    from matplotlib.figure import Figure

    drawn: dict[str, list[list[tuple[int, float]]]] = {}
    epochs: dict[str, list[list[tuple[int, float]] | None]] = {}
    finished: set[str] = set()  # runs drawn from finished trials, whose early stops are held
    for run, group in selected.items():
        trials = [i for i in group.finished() if group.events[i].scalars.get(metric)]
        if trials:
            finished.add(run)
        else:
            trials = [i for i, e in enumerate(group.events) if e.scalars.get(metric)]
        if trials:
            scalars = [group.events[i].scalars for i in trials]
            drawn[run] = [s[metric] for s in scalars]
            epochs[run] = [per_epoch(s[metric], s.get("epoch", [])) for s in scalars]
    if not drawn:
        return None
    by_epoch = all(points is not None for series in epochs.values() for points in series)
    if by_epoch:
        drawn = {run: [points for points in series if points is not None] for run, series in epochs.items()}
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    any_held = False
    for run, series in drawn.items():
        if run in finished:
            series, extended = held(series)
            any_held |= extended
        xs, mean, low, high = _mean_and_band(series)
        label = f"{run} (failed)" if run in failed else run
        label += f" (mean of {len(series)} seeds)" if len(series) > 1 else ""
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=label)
        if len(series) > 1:
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel(EPOCH_AXIS if by_epoch else "step")
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs (and steps)
    ax.set_ylabel(metric)
    stopped = ";\na seed that stopped early is held at its last value" if any_held else ""
    ax.set_title(f"{metric} during training (mean over seeds; {BAND}{stopped})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def length_figure(selected: dict[str, Group], path: Path) -> Path | None:
    """Translation: test exact match, token accuracy and BLEU per source-length bucket, per run the mean over seeds
    with a band from the lowest to the highest seed."""
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
        ax.set_xlabel("source length (tokens)")
        ax.set_ylabel(f"test {BUCKETS[key]}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"test {BUCKETS[key]} by source length", fontsize=10)
        ax.tick_params(axis="x", rotation=45)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"test split, per run the mean over its seeds; {BAND}", fontsize=10)
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


def points_figure(comparison: Comparison, selected: dict[str, Group], test_metric: str, path: Path) -> Path | None:
    """With a curve: each run's test headline metric at every point of the curve (the value of its config key), the
    mean over seeds with a band from the lowest to the highest seed; a log axis when the values span 10 × or more."""
    if comparison.curve is None:
        return None
    from matplotlib.figure import Figure

    key, _ = comparison.curve
    column = column_name(test_metric)
    lines: dict[str, list[tuple[Any, list[float]]]] = {}
    for run in comparison.runs:
        group = selected.get(run.name)
        values = group.values(column) if group is not None else []
        if values:
            lines.setdefault(run.line_name, []).append((run.point, values))
    if not lines:
        return None
    # a run and its baseline share a colour; the baseline is dashed
    against = {run.line_name: run.baseline_line for run in comparison.runs if run.baseline}
    palette, colours = iter(f"C{i}" for i in range(10 * len(lines))), {}
    for line in lines:
        if line not in colours:
            colours[line] = next(palette)
            if against.get(line) in lines:
                colours.setdefault(against[line], colours[line])
    baselines = set(against.values()) - set(against)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for line, points in lines.items():
        xs = [x for x, _ in points]
        style = "--" if line in baselines else "-"
        ax.plot(xs, [mean_of(v) for _, v in points], style, marker="o", color=colours[line], label=line)
        lows, highs = [min(v) for _, v in points], [max(v) for _, v in points]
        ax.fill_between(xs, lows, highs, color=colours[line], alpha=0.15, linewidth=0)
    numbers = [x for points in lines.values() for x, _ in points if isinstance(x, (int, float))]
    if numbers and min(numbers) > 0 and max(numbers) >= 10 * min(numbers):
        ax.set_xscale("log")
        ticks = sorted(set(numbers))
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel(key)
    ax.set_ylabel(test_metric)
    ax.set_title(f"{test_metric} along {key} (mean over seeds; {BAND})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
