"""Properties every data module must have: determinism, held-out splits kept out of training, DDP sharing.

Each test runs on every data module with tiny settings: a small symbol set or lexicon and short inputs, so
that training draws many inputs that also occur in validation or test, and the held-out filter has work to do.
"""

import itertools
import tracemalloc
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler

from nlparena.data import Copy, LanguagePair, Pretraining, Reverse, Sentiment, SentimentPair, Sort
from nlparena.data.pretraining import IGNORE_INDEX
from nlparena.data.splits import ShardedBatches, TensorBatches
from nlparena.data.vocab import PAD

SIZES = {"train_size": 120, "val_size": 17, "test_size": 13, "batch_size": 5}  # odd held-out sizes: uneven shares
TINY_LEXICON = {"num_positive": 1, "num_negative": 1, "num_neutral": 2, "num_negators": 1}
TINY = {
    Copy: {"vocab_size": 4, "train_lengths": (2, 3)},
    Reverse: {"vocab_size": 4, "train_lengths": (2, 3)},
    Sort: {"vocab_size": 4, "train_lengths": (2, 3)},
    LanguagePair: {"num_nouns": 3, "num_verbs": 2, "num_adjectives": 2, "train_lengths": (3, 4)},
    Sentiment: {**TINY_LEXICON, "train_lengths": (1, 3)},
    SentimentPair: {**TINY_LEXICON, "train_lengths": (1, 2)},
    Pretraining: {**TINY_LEXICON, "num_neutral": 1, "train_lengths": (1, 2)},
}
SPLITS = ("train", "val", "test")
every_module = pytest.mark.parametrize("cls", list(TINY), ids=lambda cls: cls.__name__)


def make(cls, **kwargs):
    return cls(**{**SIZES, **TINY[cls], **kwargs})


def model_inputs(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The input tensor as the model sees it (masked, for MLM)."""
    return tensors["src"] if "src" in tensors else tensors["ids"]


def inputs(tensors: dict[str, torch.Tensor]) -> list[tuple[int, ...]]:
    """Each example's input without padding; for MLM the unmasked one, so that masks cannot hide a repeat."""
    ids = model_inputs(tensors)
    if "mlm_labels" in tensors:  # mlm_labels hold the original id wherever a token was chosen
        ids = torch.where(tensors["mlm_labels"] != IGNORE_INDEX, tensors["mlm_labels"], ids)
    return [tuple(t for t in row if t != PAD) for row in ids.tolist()]


def examples(tensors: dict[str, torch.Tensor]) -> list[tuple]:
    """Each example's rows of every tensor, without the trailing padding that a batch may trim."""
    columns = []
    for name, t in sorted(tensors.items()):
        fill = IGNORE_INDEX if name == "mlm_labels" else PAD
        columns.append(t.tolist() if t.dim() == 1 else [strip(row, fill) for row in t.tolist()])
    return list(zip(*columns, strict=True))


def strip(row: list[int], fill: int) -> tuple[int, ...]:
    while row and row[-1] == fill:
        row = row[:-1]
    return tuple(row)


def batches(dm, split: str) -> list[dict[str, torch.Tensor]]:
    return list(getattr(dm, f"{split}_dataloader")())


@every_module
def test_same_seed_same_data_whatever_num_workers_or_repeated_setup(cls):
    a, b = make(cls, seed=5), make(cls, seed=5, num_workers=2)
    a.setup()
    first = {split: {k: t.clone() for k, t in data.tensors.items()} for split, data in a.splits.items()}
    a.setup()  # Lightning calls setup once per stage
    b.setup()
    assert set(first) == set(a.splits) == set(b.splits) == set(SPLITS)
    for split in SPLITS:
        for dm in (a, b):
            tensors = dm.splits[split].tensors
            assert tensors.keys() == first[split].keys()
            assert all(torch.equal(first[split][k], t) for k, t in tensors.items()), (split, dm.num_workers)
    assert a.trainer is None and b.trainer is None  # world 1
    for split in SPLITS:
        one, two = batches(a, split), batches(b, split)  # in this process, then from 2 worker processes
        assert len(one) == len(two) > 1
        for x, y in zip(one, two, strict=True):
            assert x.keys() == y.keys() == first[split].keys()
            assert all(torch.equal(x[k], y[k]) for k in x), split


@every_module
def test_different_seed_gives_different_data(cls):
    a, b = make(cls, seed=1), make(cls, seed=2)
    a.setup()
    b.setup()
    for split in SPLITS:
        x, y = a.splits[split].tensors, b.splits[split].tensors
        assert sorted(inputs(x)) != sorted(inputs(y)), split  # other inputs, not the same ones reordered
        seen, other = model_inputs(x), model_inputs(y)
        assert seen.shape != other.shape or not torch.equal(seen, other), split  # for MLM: documents or masks


@every_module
def test_no_validation_or_test_input_appears_in_training(cls):
    dm = make(cls, seed=0)
    dm.setup()
    train = set(inputs(dm.splits["train"].tensors))
    for split in ("val", "test"):
        assert not train & set(inputs(dm.splits[split].tensors)), split
    n = SIZES["train_size"]
    assert 0.3 * n < len(dm.splits["train"]) < n  # some, not all, generated examples were held out


@pytest.mark.parametrize("world_size", [2, 3])
@every_module
def test_evaluation_splits_are_shared_between_processes_without_repeats(cls, world_size):
    dm = make(cls, seed=0)
    dm.setup()
    for split in ("val", "test"):
        whole = dm.splits[split].tensors
        shares = []
        for rank in range(world_size):
            dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
            shares.append([example for batch in batches(dm, split) for example in examples(batch)])
        n = SIZES[f"{split}_size"]
        assert sum(map(len, shares)) == n, split  # none repeated to even out the shares
        assert max(map(len, shares)) - min(map(len, shares)) <= 1, split  # every process takes its part
        assert sorted(e for share in shares for e in share) == sorted(examples(whole)), split  # every one once


def padding_share(batches_: list[dict[str, torch.Tensor]], refs: set[str]) -> float:
    pads = sum(int((b[ref] == PAD).sum()) for b in batches_ for ref in refs)
    return pads / sum(b[ref].numel() for b in batches_ for ref in refs)


@every_module
def test_length_bucketing_serves_every_training_example_once_with_less_padding(cls):
    plain, bucketed = make(cls, seed=0, bucket_window=0), make(cls, seed=0, bucket_window=4)
    plain.setup()
    bucketed.setup()
    one, other = batches(plain, "train"), batches(bucketed, "train")
    assert len(one) == len(other)  # the same number of steps per epoch
    assert sorted(e for b in other for e in examples(b)) == sorted(examples(plain.splits["train"].tensors))
    refs = set(cls.trim.values())
    assert padding_share(other, refs) < padding_share(one, refs)


@every_module
def test_length_bucketed_batches_are_a_function_of_seed_and_epoch_only(cls):
    a, b = make(cls, seed=3, bucket_window=4), make(cls, seed=3, bucket_window=4, num_workers=2)
    a.setup()
    b.setup()
    epochs = []
    for epoch in (0, 1):
        loaders = [dm.train_dataloader() for dm in (a, b)]
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        x, y = (list(loader) for loader in loaders)
        assert all(torch.equal(p[k], q[k]) for p, q in zip(x, y, strict=True) for k in p), epoch
        epochs.append([examples(batch) for batch in x])
    assert epochs[0] != epochs[1]  # a new order every epoch


@pytest.mark.parametrize("world_size", [2, 3])
@every_module
def test_length_bucketed_training_shares_cover_the_split_under_ddp(cls, world_size):
    dm = make(cls, seed=0, bucket_window=4)
    dm.setup()
    shares = []
    for rank in range(world_size):
        dm.trainer = SimpleNamespace(world_size=world_size, global_rank=rank)
        shares.append(batches(dm, "train"))
    assert len({len(share) for share in shares}) == 1  # every process takes as many steps
    served = [e for share in shares for batch in share for e in examples(batch)]
    whole = examples(dm.splits["train"].tensors)
    assert set(served) == set(whole)
    assert len(served) - len(whole) < world_size  # only DistributedSampler's padding to equal shares repeats


@pytest.mark.parametrize(("rows", "world_size"), [(23, 1), (23, 2), (23, 5), (3, 7)])
def test_training_shares_are_distributed_samplers_order_batched(rows, world_size):
    data = TensorBatches(src=torch.zeros(rows, 1))
    for rank, epoch in itertools.product(range(world_size), (0, 3)):
        sharded = ShardedBatches(data, 4, True, seed=5, num_replicas=world_size, rank=rank)
        plain = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=5)
        sharded.set_epoch(epoch)
        plain.set_epoch(epoch)
        batches = list(sharded)
        assert [i for batch in batches for i in batch] == list(plain)
        assert len(batches) == len(sharded) and all(len(batch) <= 4 for batch in batches)


@pytest.mark.parametrize("window", [0, 3])
def test_a_training_batch_of_a_large_split_is_served_without_a_list_of_every_index(window):
    data = TensorBatches(src=torch.ones(1_000_000, 1, dtype=torch.long))
    tracemalloc.start()
    batch = next(iter(ShardedBatches(data, 64, True, seed=0, bucket_window=window)))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(batch) == 64 and peak < 8 * 2**20  # a list of a million ints takes about 40 MB
