"""The comparison report's statistics against scipy (intervals, tests) and torchmetrics (macro F1)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torchmetrics.classification import MulticlassF1Score

from nlparena.compare.statistics import (
    STATISTICS,
    across_seeds,
    exact_match,
    macro_f1,
    paired_bootstrap,
    summarize,
)
from nlparena.models.classification import ClassificationModel
from nlparena.models.translation import TranslationModel

# Degenerate inputs (one seed, constant samples, a run against itself) must not make scipy warn.
pytestmark = pytest.mark.filterwarnings("error")

SEEDS_A = [0.81, 0.84, 0.79, 0.86, 0.83]
SEEDS_B = [0.78, 0.80, 0.77, 0.79, 0.76, 0.80]  # one seed more: Welch's test has unequal sizes too


def correctness(rate: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """0/1 correctness of n test examples, each right with probability `rate`."""
    return (rng.random(n) < rate).astype(int)


def test_summarize_matches_scipy_student_t_interval():
    summary = summarize(SEEDS_A)
    mean = np.mean(SEEDS_A)
    low, high = stats.t.interval(0.95, len(SEEDS_A) - 1, loc=mean, scale=stats.sem(SEEDS_A))
    assert summary.n == 5
    assert summary.mean == pytest.approx(mean, abs=1e-12)
    assert summary.ci_low == pytest.approx(low, abs=1e-12)
    assert summary.ci_high == pytest.approx(high, abs=1e-12)
    assert (summary.min, summary.max) == (0.79, 0.86)
    assert summary.std == pytest.approx(np.std(SEEDS_A, ddof=1), abs=1e-12)


def test_summarize_with_higher_confidence_gives_a_wider_interval():
    narrow, wide = summarize(SEEDS_A, confidence=0.9), summarize(SEEDS_A, confidence=0.99)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


def test_summarize_of_one_seed_has_no_interval():
    summary = summarize([0.8])
    assert summary.mean == 0.8
    assert math.isnan(summary.ci_low) and math.isnan(summary.ci_high) and math.isnan(summary.std)


def test_summarize_of_a_constant_sample_has_a_zero_width_interval():
    summary = summarize([0.8] * 5)
    assert summary.ci_low == summary.ci_high == summary.mean == 0.8
    assert summary.std == 0.0


def test_summarize_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="non-empty"):
        summarize([])


def test_across_seeds_matches_scipy_welch_t_test():
    verdict = across_seeds(SEEDS_A, SEEDS_B, mode="max")
    expected = stats.ttest_ind(SEEDS_A, SEEDS_B, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert verdict.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert verdict.ci_low == pytest.approx(interval.low, abs=1e-12)
    assert verdict.ci_high == pytest.approx(interval.high, abs=1e-12)
    assert verdict.difference == pytest.approx(np.mean(SEEDS_A) - np.mean(SEEDS_B), abs=1e-12)
    assert verdict.verdict == "better"
    assert verdict.test == "Welch's t-test over 5 vs 6 seeds"


def test_across_seeds_in_min_mode_calls_a_higher_value_worse():
    assert across_seeds(SEEDS_A, SEEDS_B, mode="min").verdict == "worse"
    assert across_seeds(SEEDS_B, SEEDS_A, mode="min").verdict == "better"
    assert across_seeds(SEEDS_B, SEEDS_A, mode="max").verdict == "worse"


def test_across_seeds_of_overlapping_samples_is_no_detectable_difference():
    verdict = across_seeds(SEEDS_A, [0.80, 0.85, 0.82, 0.84, 0.78], mode="max")
    assert verdict.verdict == "no detectable difference"
    assert verdict.ci_low < 0 < verdict.ci_high
    assert verdict.p_value > 0.05


def test_across_seeds_of_identical_constant_samples_is_p_one():
    verdict = across_seeds([0.8] * 3, [0.8] * 4, mode="max")
    assert (verdict.difference, verdict.ci_low, verdict.ci_high, verdict.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert verdict.verdict == "no detectable difference"


def test_across_seeds_of_different_constant_samples_is_an_exact_difference():
    verdict = across_seeds([0.8] * 3, [0.7] * 3, mode="max")
    assert verdict.ci_low == verdict.ci_high == verdict.difference == pytest.approx(0.1)
    assert verdict.p_value == 0.0
    assert verdict.verdict == "better"


def test_across_seeds_with_one_constant_side_is_still_scipy_welch_test():
    verdict = across_seeds([0.8, 0.8, 0.8], [0.7, 0.75, 0.72], mode="max")
    with pytest.warns(RuntimeWarning, match="Precision loss"):  # scipy's, spurious: the variance is exactly 0
        expected = stats.ttest_ind([0.8, 0.8, 0.8], [0.7, 0.75, 0.72], equal_var=False)
    assert verdict.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert verdict.ci_low == pytest.approx(expected.confidence_interval().low, abs=1e-12)


def test_across_seeds_with_one_seed_has_no_test():
    verdict = across_seeds([0.8], SEEDS_B, mode="max")
    assert verdict.verdict == "no detectable difference"
    assert math.isnan(verdict.p_value) and math.isnan(verdict.ci_low) and math.isnan(verdict.ci_high)
    assert verdict.difference == pytest.approx(0.8 - np.mean(SEEDS_B))


def test_paired_bootstrap_finds_a_planted_difference():
    rng = np.random.default_rng(0)
    baseline, candidate = correctness(0.7, 2000, rng), correctness(0.8, 2000, rng)
    verdict = paired_bootstrap(candidate, baseline, None, exact_match, mode="max")
    assert verdict.verdict == "better"
    assert verdict.p_value < 0.01
    assert 0 < verdict.ci_low < 0.10 < verdict.ci_high
    assert verdict.difference == pytest.approx(candidate.mean() - baseline.mean())
    assert verdict.test == "paired bootstrap over 2000 test examples, 10000 resamples"
    assert paired_bootstrap(candidate, baseline, None, exact_match, mode="min").verdict == "worse"


def test_paired_bootstrap_of_a_run_against_itself_is_no_difference():
    rng = np.random.default_rng(1)
    references, outputs = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    verdict = paired_bootstrap(outputs, outputs.copy(), references, macro_f1, mode="max")
    assert (verdict.difference, verdict.ci_low, verdict.ci_high, verdict.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert verdict.verdict == "no detectable difference"


def test_paired_bootstrap_of_a_small_difference_on_a_small_sample_is_no_detectable_difference():
    rng = np.random.default_rng(2)
    baseline = rng.permutation([1] * 42 + [0] * 18)  # 70 % of 60 examples
    candidate = baseline.copy()
    candidate[np.flatnonzero(baseline == 0)[:6]] = 1  # fixes 6 of the baseline's errors
    candidate[np.flatnonzero(baseline == 1)[:3]] = 0  # and breaks 3 of its successes: 75 %
    verdict = paired_bootstrap(candidate, baseline, None, exact_match, mode="max")
    assert verdict.difference == pytest.approx(0.05)
    assert verdict.verdict == "no detectable difference"
    assert verdict.ci_low < 0 < verdict.ci_high
    assert verdict.p_value > 0.05


def test_paired_bootstrap_interval_is_scipy_bootstrap_interval():
    rng = np.random.default_rng(3)
    references = rng.integers(0, 5, 400)
    baseline = np.where(rng.random(400) < 0.6, references, rng.integers(0, 5, 400))
    candidate = np.where(rng.random(400) < 0.7, references, rng.integers(0, 5, 400))
    verdict = paired_bootstrap(candidate, baseline, references, macro_f1, mode="max", resamples=2000, seed=7)

    def difference(cand, base, refs, axis=-1):
        return macro_f1(cand, refs, axis=axis) - macro_f1(base, refs, axis=axis)

    expected = stats.bootstrap(
        (candidate, baseline, references),
        difference,
        n_resamples=2000,
        paired=True,
        method="percentile",
        rng=np.random.default_rng(7),
    )
    assert verdict.ci_low == pytest.approx(expected.confidence_interval.low, abs=1e-12)
    assert verdict.ci_high == pytest.approx(expected.confidence_interval.high, abs=1e-12)
    tail = min(np.sum(expected.bootstrap_distribution <= 0), np.sum(expected.bootstrap_distribution >= 0))
    assert verdict.p_value == pytest.approx(min(1.0, 2 * (tail + 1) / 2001))


def test_paired_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(4)
    baseline, candidate = correctness(0.7, 500, rng), correctness(0.72, 500, rng)
    first = paired_bootstrap(candidate, baseline, None, exact_match, mode="max", resamples=1000, seed=5)
    assert paired_bootstrap(candidate, baseline, None, exact_match, mode="max", resamples=1000, seed=5) == first
    other = paired_bootstrap(candidate, baseline, None, exact_match, mode="max", resamples=1000, seed=6)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_paired_bootstrap_of_class_names_equals_that_of_class_ids():
    rng = np.random.default_rng(5)
    references, baseline, candidate = rng.integers(0, 3, (3, 200))
    names = np.array(["negative", "neutral", "positive"])
    by_id = paired_bootstrap(candidate, baseline, references, macro_f1, mode="max", resamples=500)
    by_name = paired_bootstrap(names[candidate], names[baseline], names[references], macro_f1, "max", resamples=500)
    assert by_name == by_id


def test_paired_bootstrap_takes_a_statistic_without_axis():
    rng = np.random.default_rng(6)
    baseline, candidate = correctness(0.6, 100, rng), correctness(0.7, 100, rng)

    def mean_correct(outputs, references):  # no `axis`: scipy calls it once per resample
        return outputs.mean()

    verdict = paired_bootstrap(candidate, baseline, None, mean_correct, "max", resamples=200)
    vectorised = paired_bootstrap(candidate, baseline, None, exact_match, "max", resamples=200)
    assert verdict.ci_low == pytest.approx(vectorised.ci_low) and verdict.ci_high == pytest.approx(vectorised.ci_high)


def test_paired_bootstrap_rejects_outputs_of_different_lengths():
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(np.ones(10), np.ones(9), None, exact_match, mode="max")


@pytest.mark.parametrize("num_classes", [5, 7])  # 7: two classes neither predicted nor in the references
def test_macro_f1_matches_torchmetrics_as_the_classification_model_configures_it(num_classes):
    rng = np.random.default_rng(7)
    references = rng.integers(0, 5, 300)
    outputs = rng.choice([0, 1, 3, 4], 300)  # class 2 is never predicted: its F1 is 0 and it counts
    metric = MulticlassF1Score(num_classes, average="macro", validate_args=False)  # as in ClassMetrics
    expected = metric(torch.from_numpy(outputs), torch.from_numpy(references)).item()
    assert macro_f1(outputs, references, num_classes=num_classes) == pytest.approx(expected, abs=1e-6)
    assert macro_f1(outputs, references) == pytest.approx(expected, abs=1e-6)


def test_macro_f1_of_a_batch_is_one_score_per_row():
    rng = np.random.default_rng(8)
    references, outputs = rng.integers(0, 4, (6, 50)), rng.integers(0, 4, (6, 50))
    rows = [macro_f1(o, r, num_classes=4) for o, r in zip(outputs, references, strict=True)]
    np.testing.assert_allclose(macro_f1(outputs, references, num_classes=4), rows, atol=1e-12)
    np.testing.assert_allclose(macro_f1(outputs.T, references.T, num_classes=4, axis=0), rows, atol=1e-12)


def test_exact_match_compares_strings_or_averages_correctness():
    assert exact_match(np.array(["a b", "c", "d"]), np.array(["a b", "c", "e"])) == pytest.approx(2 / 3)
    assert exact_match(np.array([1, 0, 1, 1])) == 0.75
    np.testing.assert_allclose(exact_match(np.array([[1, 0], [1, 1]])), [0.5, 1.0])


def test_every_compared_headline_metric_has_a_statistic():
    for model in (ClassificationModel, TranslationModel):
        assert model.headline_metric.removeprefix("val/") in STATISTICS
