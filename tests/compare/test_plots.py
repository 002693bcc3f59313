"""The report's validation curve lines runs up by epoch, so that batches of other sizes compare at equal data, and
counts epochs as checkpoint names do; every figure with a band says what the band is."""

from pathlib import Path

import pytest

from nlparena.compare import plots
from nlparena.compare.config import Record, Run, Trial
from nlparena.compare.groups import Group
from nlparena.compare.plots import per_epoch
from nlparena.events import RunEvents

# Lightning logs `epoch` at every logging step and beside each validation's metrics
EPOCHS = [(49, 0.0), (99, 0.0), (187, 0.0), (199, 1.0), (375, 1.0), (563, 2.0)]


def test_validation_points_are_placed_at_the_epoch_that_checkpoint_names_give_them():
    # the first epoch's validation is epoch 0, as in its checkpoint's name `best-epoch000-step...`
    assert per_epoch([(187, 0.5), (375, 0.7), (563, 0.9)], EPOCHS) == [(0, 0.5), (1, 0.7), (2, 0.9)]


def test_a_large_batch_run_lines_up_with_a_small_batch_run_at_equal_epochs():
    small = per_epoch([(187, 0.5), (375, 0.7)], EPOCHS)
    large = per_epoch([(23, 0.4), (47, 0.6)], [(23, 0.0), (47, 1.0)])  # 8 times fewer steps an epoch
    assert [x for x, _ in small] == [x for x, _ in large] == [0, 1]


def test_validating_twice_an_epoch_or_without_an_epoch_beside_it_keeps_the_steps():
    assert per_epoch([(99, 0.4), (187, 0.5)], EPOCHS) is None  # both in epoch 0
    assert per_epoch([(150, 0.4)], EPOCHS) is None  # no epoch logged at step 150


def two_seeds(run: str, exact: tuple[float, float]) -> Group:
    """A run's group of two finished seeds, validated after epochs 0 and 1 and tested by source length."""
    events = []
    for value in exact:
        scalars = {"epoch": [(9, 0.0), (19, 1.0)], "val/exact_match": [(9, value / 2), (19, value)]}
        for bucket in ("03-04", "05-06"):
            for key in plots.BUCKETS:
                scalars[f"test/{key}/{bucket}"] = [(19, value)]
        events.append(RunEvents(scalars=scalars))
    records = [Record(Trial(Run(run), seed), "finished") for seed in (0, 1)]
    return Group(run, "", records, events, [{"seed": seed} for seed in (0, 1)])


def drawn(monkeypatch, draw) -> list:
    """The figures `draw()` saves."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    draw()
    return figures


def texts(fig) -> str:
    from matplotlib.text import Text

    return " ".join(text.get_text() for text in fig.findobj(Text))


def test_every_figure_with_a_band_says_what_the_band_is(monkeypatch):
    selected = {"a": two_seeds("a", (0.4, 0.6)), "b": two_seeds("b", (0.7, 0.9))}
    figures = drawn(
        monkeypatch,
        lambda: (
            plots.curve_figure(selected, "val/exact_match", None, set(), Path("curve.png")),
            plots.length_figure(selected, Path("length.png")),
        ),
    )
    assert len(figures) == 2
    for fig in figures:
        assert "band: lowest to highest seed" in texts(fig)


def test_the_curve_counts_epochs_as_checkpoint_names_do(monkeypatch):
    selected = {"a": two_seeds("a", (0.4, 0.6))}
    (fig,) = drawn(monkeypatch, lambda: plots.curve_figure(selected, "val/exact_match", None, set(), Path("c.png")))
    ax = fig.axes[0]
    assert list(ax.lines[0].get_xdata()) == [0, 1]  # the first epoch's validation at 0, as its checkpoint counts it
    assert "checkpoint" in ax.get_xlabel() and "best-epoch000" in ax.get_xlabel()  # `best-epoch{epoch:03d}-...`


def test_a_seed_that_stopped_at_the_target_stays_in_the_mean_at_its_last_value(monkeypatch):
    # seed 0 reaches the target after epoch 1 and stops; seed 1 trains on to epoch 3 (validation at step 10e + 9)
    curves = [[0.6, 0.99], [0.2, 0.5, 0.8, 0.99]]
    events = [
        RunEvents(
            scalars={
                "epoch": [(10 * e + 9, float(e)) for e in range(len(curve))],
                "val/exact_match": [(10 * e + 9, value) for e, value in enumerate(curve)],
            }
        )
        for curve in curves
    ]
    records = [Record(Trial(Run("a"), seed), "finished") for seed in (0, 1)]
    group = Group("a", "", records, events, [{"seed": seed} for seed in (0, 1)])
    (fig,) = drawn(monkeypatch, lambda: plots.curve_figure({"a": group}, "val/exact_match", 0.99, set(), Path("c.png")))
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [0, 1, 2, 3]  # not cut at the first seed's stop
    assert list(line.get_ydata()) == pytest.approx([0.4, 0.745, 0.895, 0.99])  # seed 0 counted at 0.99 after it
    assert "held at its last value" in fig.axes[0].get_title()
