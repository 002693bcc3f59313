"""What every data module shares: splits generated once from (seed, split), served as whole-batch slices.

A subclass says how a split is generated (`generate`); `SplitDataModule.setup` keeps validation and test
inputs out of training, `TensorBatches` slices a batch and trims its padding, `ShardedBatches` shares the
batches out between processes, so determinism and DDP behave the same for every task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from nlparena.data.tasks import sequence_keys
from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError

MAX_SPLIT_BYTES = 2 * 2**30  # the most memory a data module's splits may take (synthetic tasks need far less)


class TensorBatches(Dataset):
    """Tensors that share their first dimension; indexing with a list of indices returns a whole batch.

    `trim` maps a tensor's name to the tensor whose PAD columns set its width in a batch: `{"src": "src"}`
    trims a token tensor to its longest example; `{"segments": "ids"}` cuts segment ids (where 0 is a real
    value) to the width of their tokens. Tensors not named keep their width.
    """

    def __init__(self, trim: dict[str, str] | None = None, **tensors: torch.Tensor) -> None:
        self.trim = dict(trim or {})
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices)
        batch = {name: t[idx] for name, t in self.tensors.items()}
        # the padding columns that no example of this batch uses
        widths = {ref: int((batch[ref] != PAD).sum(1).max()) for ref in set(self.trim.values())}
        for name, ref in self.trim.items():
            batch[name] = batch[name][:, : widths[ref]]
        return batch

    def length_keys(self) -> torch.Tensor:
        """(N,) sort key per example, lexicographic over the real-token counts of the tensors that set batch widths
        (a translation's source, then its target): examples of equal key give a batch without padding."""
        keys = torch.zeros(len(self), dtype=torch.long)
        for ref in dict.fromkeys(self.trim.values()):
            tensor = self.tensors[ref]
            keys = keys * (tensor.shape[1] + 1) + (tensor != PAD).sum(1)
        return keys


class ShardedBatches(DistributedSampler):
    """Yields lists of indices (whole batches): this process's share of a split.

    Training order comes from (seed, epoch), so a resumed run sees the same batches as an
    uninterrupted one, and every process agrees on it. Being a `DistributedSampler`, Lightning keeps
    it under DDP (and calls `set_epoch`) instead of swapping in a per-example sampler. Evaluation
    splits are shared out without padding, so no example is counted twice in a metric.

    With `bucket_window` W > 0, training batches are cut from windows of W batches of this process's shuffled share,
    each window sorted by length (`TensorBatches.length_keys`), and the batches are then shuffled: rows of a batch
    have similar lengths, so little of it is padding. The order stays a function of (seed, epoch).

    `generator` is the DataLoader's own, reseeded from (seed, epoch) by `set_epoch`: the DataLoader draws its
    workers' base seed from it each time it is iterated. Without one it draws from torch's global generator,
    the one dropout uses, once per epoch and per validation with `num_workers=0` but only once per run with
    persistent workers, so dropout masks, and the trained weights, depended on `num_workers`.
    """

    def __init__(
        self,
        data: TensorBatches,
        batch_size: int,
        shuffle: bool,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        bucket_window: int = 0,
    ) -> None:
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size, self.bucket_window = batch_size, bucket_window
        self._length_keys: torch.Tensor | None = None
        self.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        # a hash of (seed, epoch) (of ints: the same in every process), not the seed + epoch the order is shuffled with
        self.generator.manual_seed(hash((self.seed, epoch)) & (2**63 - 1))

    def unpadded_share(self) -> range:
        """This process's evaluation indices: every rank-th example, none repeated."""
        return range(self.rank, len(self.dataset), self.num_replicas)

    def share(self) -> torch.Tensor:
        """(num_samples,) this process's training indices: `DistributedSampler`'s, in its order (a permutation from
        seed + epoch, padded by repeating its start to a multiple of the processes, every rank-th from `rank`), kept
        as a tensor: its `__iter__` makes a Python list of every index (about 40 bytes each, 0.4 GB for 10 M rows)."""
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        if self.drop_last:
            order = order[: self.total_size]
        elif self.total_size > len(order):
            order = order.repeat(-(-self.total_size // len(order)))[: self.total_size]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        # shuffled by (seed, epoch) and padded to equal shares for training; in order and unpadded otherwise
        if not self.shuffle:
            share = self.unpadded_share()
            for start in range(0, len(share), self.batch_size):
                yield list(share[start : start + self.batch_size])
            return
        indices = self.share()
        if self.bucket_window > 0:
            yield from self.bucketed(indices)
            return
        for start in range(0, len(indices), self.batch_size):  # not `split`: a view per batch made at once, 0.4 s
            yield indices[start : start + self.batch_size].tolist()

    def bucketed(self, indices: torch.Tensor) -> Iterator[list[int]]:
        """Batches of rows of similar length from shuffled `indices`, in an order shuffled by (seed, epoch).

        Every window holds W whole batches, so the batch count is that of unbucketed batching (the last is short).
        """
        if self._length_keys is None:
            self._length_keys = self.dataset.length_keys()
        window = self.batch_size * self.bucket_window
        batches: list[torch.Tensor] = []
        for chunk in indices.split(window):
            chunk = chunk[torch.argsort(self._length_keys[chunk], stable=True)]  # ties keep their shuffled order
            batches += chunk.split(self.batch_size)
        # its own generator: the DataLoader's (`self.generator`) seeds the workers and must not move
        order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(self.generator.initial_seed() ^ 1))
        for i in order:  # a list per batch as it is served, not one of every index
            yield batches[i].tolist()

    def __len__(self) -> int:
        share = self.num_samples if self.shuffle else len(self.unpadded_share())
        return -(-share // self.batch_size)


def resolve_lengths(
    train: tuple[int, int], val: tuple[int, int] | None, test: tuple[int, int] | None
) -> dict[str, tuple[int, int]]:
    """Per-split (min, max) lengths: validation defaults to training's, test to validation's."""
    val = val or train
    test = test or val
    return {"train": tuple(train), "val": tuple(val), "test": tuple(test)}


def check_length_range(key: str, lengths: tuple[int, int], lowest: int, owner: str) -> None:
    """ConfigError unless lowest <= min <= max."""
    lo, hi = lengths
    if lo < lowest or hi < lo:
        raise ConfigError(f"data.{key}=[{lo}, {hi}]: need {lowest} <= min <= max for {owner}")


class SplitDataModule(pl.LightningDataModule):
    """Train, val and test splits generated once in `setup()` from (seed, split); batches are slices.

    Subclasses implement `generate(split)` (a dict of tensors with a shared first dimension), name the
    model input `input_name` (a training example whose input equals a held-out one is dropped) and the
    tensors `trim`med per batch (see `TensorBatches`); they take their own settings and pass these on as
    `**kwargs`, so that every task has them as config keys.

    Args:
        train_lengths: (min, max) length of the training inputs: symbols of a translation source, words of each
            sentence of a classification input or of each segment of a pre-training pair.
        val_lengths: (min, max) for validation; defaults to `train_lengths`.
        test_lengths: (min, max) for test and predict; defaults to `val_lengths`. May exceed the training lengths,
            to measure length generalisation.
        batch_size: examples per batch, per process.
        train_size, val_size, test_size: examples generated for each split (training loses the few whose input
            is also a validation or test input).
        seed: the data's seed; the same seed gives the same data whatever the processes or workers.
        num_workers: DataLoader worker processes (0: batches are sliced in the training process).
        bucket_window: training batches are cut from windows of this many batches sorted by length, then shuffled,
            so that rows of a batch have similar lengths and little of it is padding; 0 batches rows as they come.
    """

    input_name: ClassVar[str]
    trim: ClassVar[dict[str, str]]

    def __init__(
        self,
        train_lengths: tuple[int, int] = (4, 12),
        val_lengths: tuple[int, int] | None = None,
        test_lengths: tuple[int, int] | None = None,
        batch_size: int = 64,
        train_size: int = 10_000,
        val_size: int = 500,
        test_size: int = 500,
        seed: int = 0,
        num_workers: int = 0,
        bucket_window: int = 0,
    ) -> None:
        super().__init__()
        self.lengths = resolve_lengths(train_lengths, val_lengths, test_lengths)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.bucket_window = bucket_window
        for key, value in (("batch_size", batch_size), *((f"{s}_size", n) for s, n in self.sizes.items())):
            if value < 1:
                raise ConfigError(f"data.{key}={value}: must be at least 1")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers={num_workers}: must be at least 0 (0: batches made in this process)")
        if bucket_window < 0:
            raise ConfigError(f"data.bucket_window={bucket_window}: must be at least 0 (0: no length bucketing)")
        self.splits: dict[str, TensorBatches] = {}

    def generate(self, split: str) -> dict[str, torch.Tensor]:
        """The tensors of one split, drawn from `split_generator(self.seed, split)` only."""
        raise NotImplementedError

    def input_keys(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) key per example; equal inputs get equal keys."""
        return sequence_keys(tensors[self.input_name])

    def check_lengths(self, lowest: int, capacity: int, remedy: str) -> None:
        """ConfigError unless every split's lengths are a range from `lowest` up, and the `capacity` distinct inputs
        of the training lengths are at least twice the held-out examples: validation and test inputs are removed
        from training, and if they could take half of all possible ones, training would not cover the task."""
        for split, lengths in self.lengths.items():
            check_length_range(f"{split}_lengths", lengths, lowest, type(self).__name__)
        self.check_memory()
        held_out = self.sizes["val"] + self.sizes["test"]
        if capacity < 2 * held_out:
            raise ConfigError(
                f"too few distinct inputs: {type(self).__name__} has only {capacity} with data.train_lengths="
                f"{list(self.lengths['train'])}, less than twice val_size + test_size = {held_out}; "
                f"{remedy}, or lower the held-out sizes"
            )

    def check_memory(self) -> None:
        """ConfigError when the splits' tensors (examples × `max_length` × tensors × 8 bytes, an upper bound) would
        take more than MAX_SPLIT_BYTES: refused before anything is generated, naming the split of the most tokens."""
        per_example = self.max_length * max(1, len(self.trim)) * 8  # `max_length`: of the subclass
        needs = {split: size * per_example for split, size in self.sizes.items()}
        if sum(needs.values()) <= MAX_SPLIT_BYTES:
            return
        split = max(needs, key=lambda name: self.sizes[name] * self.lengths[name][1])  # the split that needs most
        lo, hi = self.lengths[split]
        raise ConfigError(
            f"data.{split}_lengths=[{lo}, {hi}] with data.{split}_size={self.sizes[split]}: the data would take about "
            f"{sum(needs.values()) / 2**30:.1f} GiB (examples × {self.max_length} tokens × 8 bytes), more than "
            f"{MAX_SPLIT_BYTES / 2**30:.0f} GiB; shorten the lengths or lower the sizes"
        )

    @property
    def pad_id(self) -> int:
        return PAD

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        held_out = {split: self.generate(split) for split in ("val", "test")}
        train = self.generate("train")
        seen = torch.cat([self.input_keys(tensors) for tensors in held_out.values()])
        fresh = ~torch.isin(self.input_keys(train), seen)  # no validation or test input appears in training
        splits = {"train": {name: t[fresh] for name, t in train.items()}, **held_out}
        self.splits = {split: TensorBatches(self.trim, **tensors) for split, tensors in splits.items()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        window = self.bucket_window if shuffle else 0
        batches = ShardedBatches(self.splits[split], self.batch_size, shuffle, self.seed, world, rank, window)
        return DataLoader(
            self.splits[split],
            sampler=batches,
            batch_size=None,  # the sampler already yields whole batches
            generator=batches.generator,  # not torch's global one, which dropout draws from
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
