import math

import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassExactMatch

from nlparena.data.vocab import PAD
from nlparena.models.metrics import BucketedMean, RatioSums
from nlparena.models.translation import training_pairs


def test_bucketed_mean_averages_each_length_range_separately():
    metric = BucketedMean(max_length=9, num_buckets=3)  # buckets 1-3, 4-6, 7-9
    assert metric.bucket_names() == ["01-03", "04-06", "07-09"]
    metric.update(torch.tensor([1, 3, 4, 9, 9]), torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0]))
    metric.update(torch.tensor([2]), torch.tensor([1.0]))
    torch.testing.assert_close(metric.compute(), torch.tensor([2 / 3, 1.0, 0.0]))


def test_bucket_without_examples_is_nan_not_zero():
    metric = BucketedMean(max_length=4, num_buckets=2)
    metric.update(torch.tensor([1]), torch.tensor([1.0]))
    assert math.isnan(metric.compute()[1])


def test_bucketed_mean_with_counts_is_a_token_accuracy_per_bucket():
    metric = BucketedMean(max_length=6, num_buckets=2)  # buckets 1-3, 4-6
    # (length, correct tokens, target tokens): 2 of 3 and 4 of 4 in the first bucket; 1 of 5 in the second
    metric.update(torch.tensor([2, 3, 5]), torch.tensor([2.0, 4.0, 1.0]), torch.tensor([3.0, 4.0, 5.0]))
    torch.testing.assert_close(metric.compute(), torch.tensor([6 / 7, 1 / 5]))


def test_training_window_sums_give_torchmetrics_values_over_the_same_batches():
    vocab, generator = 7, torch.Generator().manual_seed(0)
    window = RatioSums(("loss", "token_accuracy", "exact_match"))
    loss_mean = MeanMetric()
    accuracy = MulticlassAccuracy(vocab, average="micro", ignore_index=PAD)
    exact = MulticlassExactMatch(vocab, ignore_index=PAD)
    for width in (5, 3, 6):  # batches of other widths and padding, as a training window has them
        tgt = torch.randint(PAD + 1, vocab, (4, width), generator=generator)
        tgt[0, width - 2 :] = PAD
        preds = torch.where(torch.rand(4, width, generator=generator) < 0.8, tgt, (tgt + 1) % vocab)
        preds[1] = tgt[1]  # one row right everywhere
        loss = torch.rand((), generator=generator)
        window.update(torch.stack(training_pairs(loss, preds, tgt, PAD)).view(-1, 2))
        loss_mean.update(loss, weight=(tgt != PAD).sum())
        accuracy.update(preds, tgt)
        exact.update(preds, tgt)
    values = window.compute()
    torch.testing.assert_close(values["loss"], loss_mean.compute())
    torch.testing.assert_close(values["token_accuracy"], accuracy.compute())
    torch.testing.assert_close(values["exact_match"], exact.compute())
