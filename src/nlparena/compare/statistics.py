"""The statistics of a comparison report: a run's metric over its seeds, and whether a run beats the baseline.

Two questions, two tests, both from scipy:

- `paired_bootstrap`: is one trained model better than another *on this test set's population*? Both models
  answered the same test examples, so the examples are resampled with replacement, the same indices for both
  (Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation", EMNLP), and the headline metric
  is recomputed on each resample. This works for metrics that are not a mean over examples (macro F1), and it sees
  the test set's sampling noise, not the seed's. `scipy.stats.bootstrap(..., paired=True)` does the resampling.
  The interval is the *percentile* one: it and the p-value then read the same bootstrap distribution, so "the CI
  excludes 0" and "p < 1 - confidence" agree (up to the +1 below), as in Koehn's test. BCa would correct for skew
  but needs a jackknife over every test example and fails (nan, warnings) when the distribution is degenerate,
  which is common with discrete metrics on a small test set.
  The two-sided p-value is twice the smaller tail of the distribution of the difference beyond 0, each tail counted
  as (count + 1) / (R + 1), the usual Monte Carlo correction, so that R resamples never claim p = 0.
- `across_seeds`: is the *training recipe* better, whatever the seed? Each seed's final metric is one sample;
  seed i of one architecture has nothing to do with seed i of another, so the samples are independent and their
  variances differ: Welch's t-test (Welch 1947, "The generalization of 'Student's' problem when several different
  population variances are involved", Biometrika 34), `scipy.stats.ttest_ind(equal_var=False)`.

Both say "better", "worse" or "no detectable difference" by whether the CI of the difference (candidate minus
baseline) excludes 0, read in the direction of the metric's mode ("max": higher is better, "min": lower is).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

Mode = Literal["max", "min"]
Statistic = Callable[..., Any]  # (outputs, references[, axis]) -> float, or one float per row when given `axis`

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"


@dataclass(frozen=True)
class Summary:
    """One metric of one run over its seeds: mean with its Student-t CI, range and sample standard deviation."""

    n: int
    mean: float
    ci_low: float  # nan for one seed: there is no spread to estimate
    ci_high: float
    min: float
    max: float
    std: float  # ddof=1, the one the CI uses; nan for one seed


@dataclass(frozen=True)
class Verdict:
    """A candidate run against the baseline on one metric."""

    verdict: str  # BETTER, WORSE or NO_DIFFERENCE, in the direction of the metric's mode
    difference: float  # statistic(candidate) - statistic(baseline)
    ci_low: float  # CI of the difference
    ci_high: float
    p_value: float  # two-sided
    test: str  # which test, on how much data, for the report


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean of a metric over seeds, with the Student-t interval `scipy.stats.t.interval` gives."""
    _check_confidence(confidence)
    sample = np.asarray(values, dtype=float)
    if sample.ndim != 1 or sample.size == 0:
        raise ValueError(f"summarize needs a non-empty 1-d sequence of values, got shape {sample.shape}")
    n, low, high = sample.size, float(sample.min()), float(sample.max())
    if n == 1:
        mean, ci_low, ci_high, std = low, math.nan, math.nan, math.nan
    elif low == high:
        # scipy returns nan for scale 0; every seed gave the same value, so the interval has no width
        mean, ci_low, ci_high, std = low, low, low, 0.0
    else:
        mean = float(sample.mean())
        interval = stats.t.interval(confidence, n - 1, loc=mean, scale=stats.sem(sample))
        ci_low, ci_high, std = float(interval[0]), float(interval[1]), float(sample.std(ddof=1))
    return Summary(n=n, mean=mean, ci_low=ci_low, ci_high=ci_high, min=low, max=high, std=std)


def paired_bootstrap(
    candidate: ArrayLike,
    baseline: ArrayLike,
    references: ArrayLike | None,
    statistic: Statistic,
    mode: Mode,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Verdict:
    """Paired bootstrap over test examples of statistic(candidate, references) - statistic(baseline, references).

    Args:
        candidate: per-example outputs of the candidate run (predicted class ids or names, decoded sentences, or
            0/1 correctness when `references` is None).
        baseline: the baseline run's outputs on the same examples, in the same order.
        references: the per-example references, or None when the outputs are already correctness.
        statistic: the headline metric of a sample, e.g. `STATISTICS["macro_f1"]`; one that takes `axis` is
            called once per batch of resamples (scipy's `vectorized`), which is what makes 10k resamples fast.
            Outputs and references that are not numbers reach it as integer ids shared by the three arrays
            (equal strings, equal ids): the metrics here only compare labels, and ids are far cheaper to resample.
    """
    _check_confidence(confidence)
    _check_mode(mode)
    samples = _paired_samples([candidate, baseline] if references is None else [candidate, baseline, references])
    test = f"paired bootstrap over {samples[0].size} test examples, {resamples} resamples"
    if np.array_equal(samples[0], samples[1]):
        # Every resample's difference would be 0 (p = 1, CI [0, 0]): skip resampling, and any degenerate-case warning
        return Verdict(NO_DIFFERENCE, 0.0, 0.0, 0.0, 1.0, test)

    vectorized = "axis" in inspect.signature(statistic).parameters  # scipy's own rule for `vectorized=None`
    if references is None:

        def difference(cand: np.ndarray, base: np.ndarray, axis: int = -1) -> Any:
            return _call(statistic, cand, None, axis, vectorized) - _call(statistic, base, None, axis, vectorized)
    else:

        def difference(cand: np.ndarray, base: np.ndarray, refs: np.ndarray, axis: int = -1) -> Any:
            return _call(statistic, cand, refs, axis, vectorized) - _call(statistic, base, refs, axis, vectorized)

    result = stats.bootstrap(
        tuple(samples),
        difference,
        n_resamples=resamples,
        batch=1_000,  # (1000, N) index arrays at a time: bounded memory whatever `resamples`
        vectorized=vectorized,
        paired=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    observed = float(difference(*samples))
    distribution = result.bootstrap_distribution  # (R,) differences
    tails = (np.count_nonzero(distribution <= 0), np.count_nonzero(distribution >= 0))
    p_value = min(1.0, 2 * (min(tails) + 1) / (resamples + 1))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Verdict(_direction(low, high, mode), observed, low, high, float(p_value), test)


def across_seeds(
    candidate: Sequence[float], baseline: Sequence[float], mode: Mode, confidence: float = 0.95
) -> Verdict:
    """Welch's t-test of the candidate's final metric over its seeds against the baseline's.

    With fewer than 2 seeds on a side there is no variance to test against: the difference of the means comes back
    with a nan CI and p-value, and NO_DIFFERENCE (a report of one-seed runs still gets its row). When both sides are
    constant (every seed gave the same value) the difference is taken as exact: p = 1 and CI [0, 0] when the values
    are equal, else p = 0 and CI [d, d].
    """
    _check_confidence(confidence)
    _check_mode(mode)
    cand, base = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    if cand.ndim != 1 or base.ndim != 1 or cand.size == 0 or base.size == 0:
        raise ValueError(f"across_seeds needs two non-empty 1-d sequences, got shapes {cand.shape}, {base.shape}")
    test = f"Welch's t-test over {cand.size} vs {base.size} seeds"
    if cand.size < 2 or base.size < 2:
        difference = float(cand.mean() - base.mean())
        return Verdict(NO_DIFFERENCE, difference, math.nan, math.nan, math.nan, test + " (needs at least 2 each)")
    constant = (np.ptp(cand) == 0, np.ptp(base) == 0)
    if all(constant):
        # scipy divides by a standard error of 0 (or of rounding noise): answer exactly instead
        difference = float(cand[0] - base[0])
        p_value = 1.0 if difference == 0 else 0.0
        return Verdict(_direction(difference, difference, mode), difference, difference, difference, p_value, test)
    with warnings.catch_warnings():
        if any(constant):
            # one side has no spread: Welch's test is still defined (all the variance is the other side's), but
            # scipy warns of "catastrophic cancellation" in that side's variance, which is exactly 0
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        result = stats.ttest_ind(cand, base, equal_var=False)
        interval = result.confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    difference = float(cand.mean() - base.mean())
    return Verdict(_direction(low, high, mode), difference, low, high, float(result.pvalue), test)


def exact_match(outputs: ArrayLike, references: ArrayLike | None = None, axis: int = -1) -> Any:
    """Share of outputs equal to their reference, or the mean of 0/1 correctness when `references` is None.

    A float for 1-d inputs; one per row along `axis` for (B, N) inputs, as scipy's vectorised bootstrap passes them.
    """
    outputs = np.asarray(outputs)
    correct = outputs if references is None else outputs == np.asarray(references)
    return np.mean(correct, axis=axis, dtype=float)


def macro_f1(outputs: ArrayLike, references: ArrayLike, num_classes: int | None = None, axis: int = -1) -> Any:
    """Macro F1 as `ClassificationModel` logs it: torchmetrics' `MulticlassF1Score(num_classes, average="macro")`.

    That averages the per-class F1, 2 TP / (2 TP + FP + FN) with 0 for 0/0, over the classes present among the
    references or the outputs; a class neither predicted nor in the references does not count, so `num_classes`
    only sizes the counts (default: the largest class id + 1). Class names are mapped to ids first. A float for
    1-d inputs; one per row along `axis` for (B, N) inputs (scipy's vectorised bootstrap).
    """
    outputs, references = (np.moveaxis(array, axis, -1).astype(np.int64) for array in _as_ids([outputs, references]))
    if outputs.shape != references.shape:
        raise ValueError(f"macro_f1 needs outputs and references of one shape, got {outputs.shape}, {references.shape}")
    batch_shape, n = outputs.shape[:-1], outputs.shape[-1]
    outputs, references = outputs.reshape(-1, n), references.reshape(-1, n)  # (B, N)
    classes = int(max(outputs.max(), references.max())) + 1 if num_classes is None else num_classes
    if outputs.min() < 0 or references.min() < 0 or max(outputs.max(), references.max()) >= classes:
        raise ValueError(f"macro_f1: class ids must lie in [0, {classes})")
    # One bincount for the whole batch: row b's class c counts at b * classes + c.
    offsets = np.arange(outputs.shape[0])[:, None] * classes  # (B, 1)
    size = outputs.shape[0] * classes

    def counts(ids: np.ndarray) -> np.ndarray:
        return np.bincount(ids.ravel(), minlength=size).reshape(-1, classes)  # (B, C)

    hits = counts((references + offsets)[outputs == references])  # TP
    predicted, actual = counts(outputs + offsets), counts(references + offsets)  # TP + FP, TP + FN
    present = predicted + actual > 0  # TP + FP + FN > 0
    f1 = 2 * hits / np.maximum(predicted + actual, 1)
    score = f1.sum(-1) / present.sum(-1)  # absent classes have f1 = 0
    return score.reshape(batch_shape) if batch_shape else float(score[0])


# The headline metrics (without "val/" or "test/") that `paired_bootstrap` can recompute from per-example outputs.
STATISTICS: dict[str, Statistic] = {"exact_match": exact_match, "macro_f1": macro_f1, "accuracy": exact_match}


def _paired_samples(arrays: list[ArrayLike]) -> list[np.ndarray]:
    """The outputs (and references) as arrays (`_as_ids`), each 1-d, of one length and at least 2 examples."""
    samples = _as_ids(arrays)
    n = samples[0].size
    if any(sample.ndim != 1 or sample.size != n for sample in samples) or n < 2:
        shapes = ", ".join(str(sample.shape) for sample in samples)
        raise ValueError(f"paired_bootstrap needs 1-d outputs of one length, at least 2 examples; got {shapes}")
    return samples


def _as_ids(arrays: list[ArrayLike]) -> list[np.ndarray]:
    """The arrays as numpy; if any is not numeric, all of them as integer ids shared across them."""
    arrays = [np.asarray(array) for array in arrays]
    if all(array.dtype.kind in "biuf" for array in arrays):
        return arrays
    flat = np.concatenate([array.astype(str).ravel() for array in arrays])
    ids = np.unique(flat, return_inverse=True)[1].reshape(-1)
    ends = np.cumsum([array.size for array in arrays])[:-1]
    return [part.reshape(array.shape) for part, array in zip(np.split(ids, ends), arrays, strict=True)]


def _call(statistic: Statistic, outputs: np.ndarray, references: np.ndarray | None, axis: int, vectorized: bool) -> Any:
    return statistic(outputs, references, axis=axis) if vectorized else statistic(outputs, references)


def _direction(ci_low: float, ci_high: float, mode: Mode) -> str:
    """BETTER or WORSE when the CI of the difference excludes 0 (nan never does), else NO_DIFFERENCE."""
    if ci_low > 0 or ci_high < 0:
        return BETTER if (ci_low > 0) == (mode == "max") else WORSE
    return NO_DIFFERENCE


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}: must be 'max' (higher is better) or 'min' (lower is better)")


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must be in (0, 1)")
