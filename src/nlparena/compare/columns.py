"""The columns of a comparison's report: each one's header, how its cells are written, the range its values lie in,
and the line that explains it below its table.

A metric's interval over seeds is Student's t, which knows nothing of the metric's range: from 2 seeds it runs far
past 0 and 1. Intervals of metrics bounded to a range (exact match, accuracy, F1, BLEU: [0, 1]; sacreBLEU and chrF:
[0, 100]) are therefore written `mean [low, high]` clipped to that range, the others `mean ± half the interval`.
"""

from __future__ import annotations

import math
from typing import Any

from nlparena.compare.config import Comparison
from nlparena.compare.statistics import Summary, Verdict

TEXT_COLUMNS = ("run", "setting", "seed", "status", "model")  # left-aligned in the trial table
CELLS = "mean, 95 % CI and range over seeds"  # what a `cell` holds, for section titles

# the metrics (without `test/`, `val/`) whose values lie in [0, 1]; `*_by_length/<bucket>` ones too
UNIT_RANGE = (
    "exact_match",
    "token_accuracy",
    "bleu",
    "accuracy",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "mlm_accuracy",
    "nsp_accuracy",
)
PERCENT_RANGE = ("sacrebleu", "chrf")  # sacreBLEU's scores, 0-100

# what a test or validation metric is, by its name without `test/` or `val/`
METRICS = {
    "exact_match": "share of examples whose whole decoded output equals the reference (0-1)",
    "token_accuracy": "share of reference tokens predicted right, each given the reference's previous tokens "
    "(teacher forcing; 0-1)",
    "bleu": "corpus BLEU of the decoded outputs against the references on token ids, on a 0-1 scale (0.25 is "
    "what papers write as 25 BLEU; not comparable with published scores)",
    "sacrebleu": "sacreBLEU's corpus BLEU of the detokenized text, on sacreBLEU's 0-100 scale (comparable with a "
    "published score of the same signature, named above)",
    "chrf": "sacreBLEU's chrF (character n-gram F-score) of the detokenized text, 0-100",
    "loss": "mean cross-entropy of the reference (lower is better; not bounded)",
    "accuracy": "share of examples whose predicted class is the true one (0-1)",
    "macro_f1": "F1 of each class, averaged over the classes so that a rare class counts as much as a common one (0-1)",
    "macro_precision": "precision of each class averaged over the classes (0-1)",
    "macro_recall": "recall of each class averaged over the classes (0-1)",
    "mlm_accuracy": "share of masked tokens predicted right (0-1)",
    "nsp_accuracy": "share of sentence pairs whose is-next label is predicted right (0-1)",
    "mlm_loss": "masked-language-model cross-entropy (lower is better)",
    "nsp_loss": "next-sentence cross-entropy (lower is better)",
}
OTHERS = {
    "run": "the run's name in the compare config",
    "setting": "the values its search chose (by validation), which every seed trained with",
    "seeds": "trials (seeds) that finished, which the row is over",
    "seed": "`--seed_everything`: the weights' initialisation and dropout (the data has its own seed: every seed "
    "trains and tests on the same examples)",
    "status": "finished, failed (see Failed runs) or not run",
    "model": "the model class the trial trained",
    "parameters": "trainable parameters",
    "fit_seconds": "wall time of the fit alone: training and validation epochs (with Lightning's sanity check), from "
    "fit start to fit end; not process start, imports, data generation or tokenization, nor the test, which the "
    "terminal's time per trial also counts",
    "samples_per_second": "training examples per second, timed over the training batches only (the clock stops for "
    "validation); the whole fit's average",
    "tokens_per_second": "non-padding input (source) tokens per second of training, on the same clock as samples/s",
}


def metric_name(column: str) -> str:
    """`best_val_exact_match`, `test_exact_match` -> `exact_match`; other columns as they are."""
    for prefix in ("best_val_", "test_", "val_"):
        if column.startswith(prefix):
            return column.removeprefix(prefix)
    return column


def bounds(column: str) -> tuple[float, float] | None:
    """The range a column's values lie in, None when it has none worth clipping to (loss, seconds, rates)."""
    name = metric_name(column)
    if name.split("_by_length_")[0] in UNIT_RANGE or name in UNIT_RANGE:
        return (0.0, 1.0)
    return (0.0, 100.0) if name in PERCENT_RANGE else None


def header(column: str, comparison: Comparison, metric: str, mode: str) -> str:
    """A column's header: the logged name of a metric (`test/exact_match`), a few words for the others."""
    reaching = f"{metric} {'≥' if mode == 'max' else '≤'} {comparison.target}"
    names = {
        "fit_seconds": "fit (s)",
        "samples_per_second": "samples/s",
        "tokens_per_second": "tokens/s",
        "steps_to_target": f"steps to {reaching}",
        "epochs_to_target": f"epochs to {reaching}",
        "reached_target": f"reached {reaching}",
        f"best_{metric.replace('/', '_')}": f"best {metric}",
    }
    return names.get(column, column.replace("test_", "test/", 1) if column.startswith("test_") else column)


def explanation(column: str, metric: str) -> str:
    """What a column holds, in a sentence fragment."""
    name = metric_name(column)
    if column == "steps_to_target":
        return f"the training step at which {metric} first reached the target (— if it never did)"
    if column == "epochs_to_target":
        return f"the epochs trained when {metric} first reached the target (1: at the end of the first; — if never)"
    if column == "reached_target":
        return (
            f"whether {metric} reached the target at a validation of the fit: per run, in how many of the seeds in "
            "its row (k/n); per trial, yes or no"
        )
    if column.startswith("best_val_"):
        return f"the best {metric} over the validations of the fit; the checkpoint that scored it is the one tested"
    if column.startswith("test_"):
        return f"on the test split, {METRICS.get(name, 'as the model logs it')}"
    return OTHERS.get(column, METRICS.get(name, "as logged"))


def notes(headers: dict[str, str], explained: set[str]) -> list[str]:
    """A line `- <header in backticks>: <explanation>` for each header (-> explanation) not explained above, headers
    with the same explanation on one line; adds them to `explained`. [] when every one was."""
    by_text: dict[str, list[str]] = {}
    for name, text in headers.items():
        if name and name not in explained:
            by_text.setdefault(text, []).append(name)
    explained.update(headers)
    lines = [f"- {', '.join(f'`{name}`' for name in names)}: {text}" for text, names in by_text.items()]
    return ["", *lines] if lines else []


# -- cells ----------------------------------------------------------------------------------------------------------


def number(value: Any, column: str) -> str:
    """Rounded for reading: parameters with separators, seconds and rates whole, metrics to 3 decimals."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if column == "reached_target":
        return "yes" if value else "no"
    if isinstance(value, bool):
        return "yes" if value else ""
    if column in ("parameters", "seed", "seeds"):
        return f"{value:,}" if column == "parameters" else str(value)
    if column in ("steps_to_target", "epochs_to_target"):
        return str(value)
    if column in ("fit_seconds", "samples_per_second", "tokens_per_second"):
        return f"{value:.1f}" if value < 10 else f"{value:,.0f}"
    return f"{value:.3f}"


def cell(stats: Summary | None, column: str) -> str:
    """A column over seeds: `0.625 [0.000, 1.000] (0.550–0.700)` for a bounded metric (its 95 % CI clipped to its
    range), `1.375 ± 0.953 (1.300–1.450)` for the others; the value alone for one seed."""
    if stats is None:
        return "—"
    if math.isnan(stats.ci_low):  # one seed: no interval
        return number(stats.mean, column)
    seeds = f"({number(stats.min, column)}–{number(stats.max, column)})"
    if (limits := bounds(column)) is not None:
        low, high = max(stats.ci_low, limits[0]), min(stats.ci_high, limits[1])
        return f"{number(stats.mean, column)} [{number(low, column)}, {number(high, column)}] {seeds}"
    return f"{number(stats.mean, column)} ± {number((stats.ci_high - stats.ci_low) / 2, column)} {seeds}"


def verdict_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return "—"
    return (
        f"{verdict.verdict} (Δ {verdict.difference:+.3f}, 95 % CI [{verdict.ci_low:+.3f}, {verdict.ci_high:+.3f}], "
        f"p = {verdict.p_value:.3g})"
    )


def cells_note(columns: list[str]) -> list[str]:
    """The line below the first table of cells over seeds: what a cell says, and which intervals are clipped."""
    clipped = sorted({bounds(c) for c in columns} - {None})
    ranges = " and ".join(f"[{low:g}, {high:g}]" for low, high in clipped)
    return [
        "",
        "Each cell over seeds is the mean, its 95 % confidence interval (Student's t over the seeds) and the lowest to "
        "highest seed: `mean [low, high] (lowest–highest)` for a metric that lies in a range, with the interval "
        f"clipped to {ranges or 'its range'} (from few seeds a t interval runs past it), and "
        "`mean ± half the interval (lowest–highest)` for the others (losses, seconds, rates).",
    ]
