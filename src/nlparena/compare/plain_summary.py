"""The top of a comparison's `report.md`, in words a student can read: a warning when there are too few seeds to
conclude, then a line per run (against its baseline, whether the two tests agree, whether it is at chance level),
and, when the tests disagree, what each one measures."""

from __future__ import annotations

from scipy import stats

from nlparena.compare.groups import BaselineVerdicts, RunSummary, column_name
from nlparena.compare.statistics import NO_DIFFERENCE, Verdict

ENOUGH_SEEDS = 3
WHY_THEY_DISAGREE = (
    "**Why the two tests can disagree.** The paired bootstrap over test examples measures whether these trained "
    "models differ on these test examples: it resamples the examples and keeps the trained weights fixed, so it "
    "cannot see how much each result owes to its seed. Welch's t-test over seeds measures whether training again with "
    "other seeds would reproduce the gap: each seed's test value is one sample, so with few seeds it has little power. "
    "The first is enough to choose between these checkpoints; a claim about the architecture needs the seed-level "
    "test too."
)
RUN_MORE = "Run 3 or more seeds (`seeds:` in the compare config, or `--seeds 0 1 2`) before claiming a difference."


def few_seeds_warning(summary: list[RunSummary]) -> list[str]:
    """A warning when a run that finished has fewer than 3 seeds; [] otherwise."""
    counts = {row.run: row.seeds for row in summary if row.seeds > 0}
    if not counts or (fewest := min(counts.values())) >= ENOUGH_SEEDS:
        return []
    few = [run for run, n in counts.items() if n == fewest]
    who = "per run" if len(few) == len(counts) else "for " + ", ".join(f"`{run}`" for run in few)
    if fewest == 1:
        text = (
            f"**Only one seed {who}.** There is no interval over seeds and no seed-level test: a difference may be "
            "the luck of one seed."
        )
    else:
        t = stats.t.ppf(0.975, fewest - 1)
        text = (
            f"**Only {fewest} seeds {who}.** A 95 % interval from {fewest} seeds is very wide ({t:.1f} standard "
            "errors each side of the mean), and Welch's t-test over seeds has little power: a real gap will often "
            'read "no detectable difference".'
        )
    return ["", f"> {text} {RUN_MORE}"]


def in_short(
    summary: list[RunSummary], verdicts: list[BaselineVerdicts], chance: dict[str, str], test_metric: str
) -> list[str]:
    """`## In short`: a line per run, and why the two tests can disagree when they do for some run."""
    pairs = {pair.run: pair for pair in verdicts}
    baselines = {pair.baseline for pair in verdicts}
    column = column_name(test_metric)
    lines, disagree = [], False
    for row in summary:
        stats_ = row.columns.get(column)
        if row.seeds == 0 or stats_ is None:
            lines.append(f"- `{row.run}`: no trial finished with a test value (see Failed runs).")
            continue
        value = f"`{test_metric}` {stats_.mean:.3f}"
        mean = f"mean {value} over {row.seeds} seeds" if row.seeds > 1 else f"{value} (one seed)"
        if row.run in pairs:
            text, disagrees = pair_sentence(pairs[row.run])
            disagree |= disagrees
            text = f"{text}. {mean[0].upper()}{mean[1:]}."
        else:
            text = f"{mean}" + (" (the baseline)." if row.run in baselines else ".")
        if row.run in chance:
            text += (
                f" ⚠ It is at chance level: {chance[row.run]}. Its numbers say nothing about its architecture until "
                "it learns: check its learning rate and epochs, and its validation curve in the figures."
            )
        lines.append(f"- `{row.run}`: {text}")
    if not verdicts and len(summary) > 1:
        lines.append("- No baseline is named, so no run is judged against another: add `baseline: RUN` to the config.")
    return ["", "## In short", "", *lines, *(["", WHY_THEY_DISAGREE] if disagree else [])]


def interval(verdict: Verdict) -> str:
    return f"95 % CI [{verdict.ci_low:+.3f}, {verdict.ci_high:+.3f}]"


def judged(verdict: Verdict, against: str, detail: str) -> str:
    """`better than <baseline> on <metric> by 0.120 (<detail>)`, or `no detectable difference from ...`."""
    if verdict.verdict == NO_DIFFERENCE:
        return f"no detectable difference from {against} (Δ {verdict.difference:+.3f}; {detail})"
    return f"{verdict.verdict} than {against} by {abs(verdict.difference):.3f} ({detail})"


def pair_sentence(pair: BaselineVerdicts) -> tuple[str, bool]:
    """What the two tests say of a run against its baseline, and whether they disagree."""
    boot, seeds = pair.bootstrap, pair.seeds
    against = f"`{pair.baseline}` on `{pair.metric}`"
    if boot is not None and seeds is not None:
        if boot.verdict == seeds.verdict:
            both = f"{interval(boot)} over test examples, {interval(seeds)} over seeds"
            return f"{judged(boot, against, both)}; both tests agree", False
        if seeds.verdict == NO_DIFFERENCE:
            return (
                f"the test examples show a difference, {judged(boot, against, interval(boot))}, but the seeds do "
                f"not (Welch's t-test over seeds, p = {seeds.p_value:.2g}): these trained models differ on these test "
                "examples, but training again with other seeds may not reproduce the gap"
            ), True
        if boot.verdict == NO_DIFFERENCE:
            return (
                f"the seeds show a difference, {judged(seeds, against, interval(seeds))}, but the test examples do "
                f"not (paired bootstrap, p = {boot.p_value:.2g}): the gap holds across seeds, but these test "
                "examples are too few to show it"
            ), True
        opposite = f"{boot.verdict} over test examples, {seeds.verdict} over seeds"
        return f"the two tests point opposite ways against {against} ({opposite}): trust neither", True
    if boot is not None:
        detail = f"{interval(boot)}, paired bootstrap over test examples"
        return (
            f"{judged(boot, against, detail)}; with one seed there is no seed-level test of whether training again "
            "would reproduce it"
        ), False
    if seeds is not None:
        detail = f"{interval(seeds)}, Welch's t-test over seeds"
        return f"{judged(seeds, against, detail)}; no test outputs for the paired bootstrap", False
    return f"against {against}: no test could be run (one seed and no test outputs)", False
