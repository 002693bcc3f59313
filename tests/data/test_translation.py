from types import SimpleNamespace

import pytest
import torch

from nlparena.data import Copy, LanguagePair, Reverse, Sort
from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError

SIZES = {"train_size": 400, "val_size": 60, "test_size": 50, "batch_size": 7}


def sentences(src: torch.Tensor) -> list[tuple[int, ...]]:
    """Source rows without their padding, comparable whatever the batch width."""
    return [tuple(t for t in row if t != PAD) for row in src.tolist()]


def batches(dm, split: str, num_workers: int = 0) -> list[dict]:
    dm.setup()
    dm.num_workers = num_workers
    loader = getattr(dm, f"{split}_dataloader")()
    return list(loader)


@pytest.mark.parametrize("cls", [Copy, Reverse, Sort, LanguagePair])
def test_same_seed_same_data_whatever_num_workers(cls):
    a, b = cls(seed=5, **SIZES), cls(seed=5, **SIZES)
    for split in ("train", "val"):
        one, two = batches(a, split, 0), batches(b, split, 2)
        assert len(one) == len(two)
        for x, y in zip(one, two, strict=True):
            assert torch.equal(x["src"], y["src"]) and torch.equal(x["tgt"], y["tgt"])


@pytest.mark.parametrize("cls", [Copy, Reverse, Sort, LanguagePair])
def test_different_seed_gives_different_data(cls):
    a, b = cls(seed=1, **SIZES), cls(seed=2, **SIZES)
    a.setup()
    b.setup()
    for split in ("train", "val", "test"):
        x, y = a.splits[split].tensors["src"], b.splits[split].tensors["src"]
        assert x.shape != y.shape or not torch.equal(x, y)


@pytest.mark.parametrize("cls", [Copy, Reverse, LanguagePair])
def test_no_validation_or_test_example_appears_in_training(cls):
    # a small symbol set makes collisions likely, so the filter has work to do
    small = {"vocab_size": 6} if cls is not LanguagePair else {"num_nouns": 4, "num_verbs": 3, "num_adjectives": 3}
    dm = cls(seed=0, train_size=3000, val_size=100, test_size=100, train_lengths=(3, 4), **small)
    dm.setup()

    train = set(sentences(dm.splits["train"].tensors["src"]))
    for split in ("val", "test"):
        assert not train & set(sentences(dm.splits[split].tensors["src"]))
    assert 750 < len(dm.splits["train"]) < 3000  # some, not all, generated examples were held out


def test_training_order_follows_seed_and_epoch_so_a_resumed_run_sees_the_same_batches():
    first, resumed = Reverse(seed=3, **SIZES), Reverse(seed=3, **SIZES)
    first.setup()
    resumed.setup()
    loader_a, loader_b = first.train_dataloader(), resumed.train_dataloader()
    epoch0 = [b["src"] for b in loader_a]
    loader_a.sampler.set_epoch(2)
    loader_b.sampler.set_epoch(2)  # a run resumed at epoch 2
    epoch2_a, epoch2_b = [b["src"] for b in loader_a], [b["src"] for b in loader_b]
    assert all(torch.equal(x, y) for x, y in zip(epoch2_a, epoch2_b, strict=True))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(epoch0, epoch2_a, strict=True))


def test_evaluation_splits_are_shared_between_processes_without_repeats():
    dm = Copy(seed=0, **{**SIZES, "val_size": 61})
    dm.setup()
    seen = []
    for rank in range(3):
        dm.trainer = SimpleNamespace(world_size=3, global_rank=rank)
        seen += [row for b in dm.val_dataloader() for row in sentences(b["src"])]
    whole = sentences(dm.splits["val"].tensors["src"])
    assert len(seen) == 61
    assert sorted(seen) == sorted(whole)  # every example once, none repeated to even out the shares


def test_a_batch_is_one_slice_trimmed_to_its_longest_example():
    dm = Reverse(seed=0, train_lengths=(1, 9), **SIZES)
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch["src"].shape[0] == SIZES["batch_size"]
    assert batch["src"].shape[1] == int((batch["src"] != PAD).sum(1).max())
    assert batch["tgt"].shape[1] == batch["src"].shape[1] + 1  # + EOS


def test_test_split_can_be_longer_than_training():
    dm = Copy(seed=0, train_lengths=(1, 5), test_lengths=(8, 12), **SIZES)
    dm.setup()
    assert int((dm.splits["train"].tensors["src"] != PAD).sum(1).max()) <= 5
    assert int((dm.splits["test"].tensors["src"] != PAD).sum(1).min()) >= 8
    assert dm.max_length == 13  # 12 + EOS: what the model's positional table must hold


def test_test_length_range_below_one_is_refused():
    with pytest.raises(ConfigError, match=r"data.test_lengths=\[0, 4\]"):
        Reverse(test_lengths=(0, 4))


def test_vocabulary_too_small_for_the_asked_sizes_is_refused():
    with pytest.raises(ConfigError, match="vocabulary too small"):
        Copy(vocab_size=2, train_lengths=(1, 3), val_size=10, test_size=10)
    with pytest.raises(ConfigError, match=r"data\.vocab_size=1"):
        Sort(vocab_size=1)
