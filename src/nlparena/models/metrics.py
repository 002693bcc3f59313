"""Torchmetrics metrics that torchmetrics lacks: a rate per length bucket (exact match by source length), and the
training metrics of the steps since the last log, summed in one tensor."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class BucketedMean(Metric):
    """Mean of a per-example value, kept separately for each bucket of lengths [lo, hi].

    Buckets are `width` long: 1..width, width+1..2*width, ... up to `max_length`. States are
    sums, so they add up across processes under DDP like any torchmetrics state.
    """

    full_state_update = False

    def __init__(self, max_length: int, num_buckets: int = 8) -> None:
        super().__init__()
        self.width = max(1, -(-max_length // num_buckets))  # ceil division
        self.num_buckets = -(-max_length // self.width)
        self.add_state("total", torch.zeros(self.num_buckets), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(self.num_buckets), dist_reduce_fx="sum")

    def update(self, lengths: torch.Tensor, values: torch.Tensor, counts: torch.Tensor | None = None) -> None:
        """lengths (N,) >= 1; values (N,) summed per bucket and divided by the bucket's summed counts (N,).

        Without counts each example counts once (values 1.0 / 0.0 give a rate of correct examples); with
        counts = target tokens and values = correct tokens, the result is the token accuracy of the bucket.
        """
        bucket = self.bucket_of(lengths)
        counts = torch.ones_like(values) if counts is None else counts
        self.total.index_add_(0, bucket, values.to(self.total.dtype))
        self.count.index_add_(0, bucket, counts.to(self.count.dtype))

    def bucket_of(self, lengths: torch.Tensor) -> torch.Tensor:
        """The bucket index of each length (N,) >= 1; lengths beyond `max_length` go to the last bucket."""
        return ((lengths - 1) // self.width).clamp(max=self.num_buckets - 1)

    def compute(self) -> torch.Tensor:
        """(num_buckets,) mean per bucket; NaN for a bucket with no example."""
        return self.total / self.count

    def bucket_names(self) -> list[str]:
        """'01-02', '03-04', ...: the inclusive length range of each bucket."""
        return [f"{i * self.width + 1:02d}-{(i + 1) * self.width:02d}" for i in range(self.num_buckets)]


class RatioSums(Metric):
    """Named ratios of sums, for the training metrics logged every `log_every_n_steps`: `update` adds one
    (numerator, denominator) pair per name into a single (K, 2) state, in place on the device; `compute` divides.

    The training step calls this every step, so it is as cheap as a metric can be: one stacked tensor added to one
    state, no argument checks, no host sync (about a third of the cost of updating MulticlassAccuracy,
    MulticlassExactMatch and MeanMetric each step, which was 5 % of a quick-start step). States are sums, so they add
    up across processes under DDP.
    """

    full_state_update = False

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.add_state("sums", torch.zeros(len(names), 2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pairs: torch.Tensor) -> None:
        """pairs (K, 2): the (numerator, denominator) of each name, in the order of `names`, for one batch."""
        self.sums += pairs

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: (num / den).float() for name, (num, den) in zip(self.names, self.sums, strict=True)}
