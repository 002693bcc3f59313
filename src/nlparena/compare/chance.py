"""Which runs of a comparison score at chance level on the test headline metric: they learned nothing, and their
verdicts say nothing about their architecture.

Chance is what a model that learned nothing scores:

- translation (`exact_match`): 0. Guessing a whole output sequence right has a chance of about 0; a run is at chance
  when its mean test exact match *and* its mean test BLEU (where logged) are within `MARGIN` of 0 (on text data a
  model that learned something can still get no sentence exactly right, but not a BLEU of 0);
- classification (`accuracy`, `macro_f1`): the better of two guessers, read from the test split's classes (the true
  class counts of its confusion matrix): always predicting the most frequent class, and a uniformly random class
  (its expected score). A run is at chance when its mean is at most chance + `MARGIN`.

Other metrics (pre-training's) have no chance level here.
"""

from __future__ import annotations

import torch

from nlparena.compare.groups import Group, RunSummary, column_name

MARGIN = 0.01  # above chance by less than this is still chance


def chance_level(metric: str, counts: torch.Tensor | None) -> float | None:
    """The chance level of a test metric (`test/macro_f1`), given the test's confusion matrix (C, C), true class
    down (only its row sums are used); None where it is not defined or the counts are needed and missing."""
    name = metric.rsplit("/", 1)[-1]
    if name == "exact_match":
        return 0.0
    if name not in ("accuracy", "macro_f1") or counts is None:
        return None
    share = counts.sum(1).double() / counts.sum().clamp(min=1)  # (C,) of the test examples per true class
    classes = share.numel()
    majority = float(share.max())
    if name == "accuracy":
        return majority  # a random class scores 1 / C on average, never more than the most frequent class's share
    # always the most frequent class: its F1 is 2 p / (1 + p); every other class present has F1 0 and counts in the
    # macro average (as torchmetrics counts a class present among the references or the predictions)
    always = 2 * majority / (1 + majority) / int((share > 0).sum())
    # a uniformly random class: class c has precision p_c and recall 1 / C, F1 2 p_c / (C p_c + 1); every class is
    # predicted, so all C count
    uniform = float((2 * share / (classes * share + 1)).mean())
    return max(always, uniform)


def test_confusion(group: Group) -> torch.Tensor | None:
    """The run's test confusion matrix summed over its finished seeds (every seed tests the same examples); None if
    it logged none."""
    found = [m[1] for i in group.finished() if (m := group.events[i].confusion("test")) is not None]
    return sum(found[1:], found[0]) if found else None


def at_chance(selected: dict[str, Group], summary: list[RunSummary], test_metric: str) -> dict[str, str]:
    """Run -> why it is at chance level (a clause for the report), for the runs whose test headline metric is."""
    column = column_name(test_metric)
    flagged = {}
    for row in summary:
        stats = row.columns.get(column)
        group = selected.get(row.run)
        if stats is None or group is None:
            continue
        name = test_metric.rsplit("/", 1)[-1]
        chance = chance_level(test_metric, test_confusion(group) if name != "exact_match" else None)
        if chance is None or stats.mean > chance + MARGIN:
            continue
        if name == "exact_match":
            bleu = row.columns.get("test_bleu")
            if bleu is not None and bleu.mean > MARGIN:
                continue
            shown = f"mean test exact match {stats.mean:.3f}" + (f" and BLEU {bleu.mean:.3f}" if bleu else "")
            flagged[row.run] = f"{shown}, where a model that learned nothing scores 0"
        else:
            flagged[row.run] = (
                f"mean {test_metric} {stats.mean:.3f}, against a chance level of {chance:.3f} (the better of always "
                "predicting the most frequent test class and guessing a class at random)"
            )
    return flagged
