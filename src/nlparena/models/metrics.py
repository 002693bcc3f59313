"""A torchmetrics metric that torchmetrics lacks: a rate per length bucket (exact match by source length)."""

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
        bucket = ((lengths - 1) // self.width).clamp(max=self.num_buckets - 1)
        counts = torch.ones_like(values) if counts is None else counts
        self.total.index_add_(0, bucket, values.to(self.total.dtype))
        self.count.index_add_(0, bucket, counts.to(self.count.dtype))

    def compute(self) -> torch.Tensor:
        """(num_buckets,) mean per bucket; NaN for a bucket with no example."""
        return self.total / self.count

    def bucket_names(self) -> list[str]:
        """'01-02', '03-04', ...: the inclusive length range of each bucket."""
        return [f"{i * self.width + 1:02d}-{(i + 1) * self.width:02d}" for i in range(self.num_buckets)]
