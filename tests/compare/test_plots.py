"""The report's validation curve lines runs up by epoch, so that batches of other sizes compare at equal data."""

from nlparena.compare.plots import per_epoch

# Lightning logs `epoch` at every logging step and beside each validation's metrics
EPOCHS = [(49, 0.0), (99, 0.0), (187, 0.0), (199, 1.0), (375, 1.0), (563, 2.0)]


def test_validation_points_are_placed_at_the_number_of_epochs_trained():
    assert per_epoch([(187, 0.5), (375, 0.7), (563, 0.9)], EPOCHS) == [(1, 0.5), (2, 0.7), (3, 0.9)]


def test_a_large_batch_run_lines_up_with_a_small_batch_run_at_equal_epochs():
    small = per_epoch([(187, 0.5), (375, 0.7)], EPOCHS)
    large = per_epoch([(23, 0.4), (47, 0.6)], [(23, 0.0), (47, 1.0)])  # 8 times fewer steps an epoch
    assert [x for x, _ in small] == [x for x, _ in large] == [1, 2]


def test_validating_twice_an_epoch_or_without_an_epoch_beside_it_keeps_the_steps():
    assert per_epoch([(99, 0.4), (187, 0.5)], EPOCHS) is None  # both in epoch 0
    assert per_epoch([(150, 0.4)], EPOCHS) is None  # no epoch logged at step 150
