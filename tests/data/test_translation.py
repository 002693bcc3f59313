import pytest
import torch

from nlparena.data import Copy, Reverse, Sort
from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError

SIZES = {"train_size": 400, "val_size": 60, "test_size": 50, "batch_size": 7}


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
    with pytest.raises(ConfigError, match="too few distinct inputs"):
        Copy(vocab_size=2, train_lengths=(1, 3), val_size=10, test_size=10)
    with pytest.raises(ConfigError, match=r"data\.vocab_size=1"):
        Sort(vocab_size=1)
