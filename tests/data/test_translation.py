import pytest
import torch

from nlparena.data import Copy, LanguagePair, Reverse, Sort
from nlparena.data.tasks import sequence_keys
from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError

SIZES = {"train_size": 400, "val_size": 60, "test_size": 50, "batch_size": 7}


def batches(dm, split: str, num_workers: int = 0) -> list[dict]:
    dm.num_workers = num_workers
    loader = getattr(dm, f"{split}_dataloader")()
    return list(loader)


@pytest.mark.parametrize("cls", [Copy, Reverse, Sort, LanguagePair])
def test_same_seed_same_data_whatever_num_workers(cls):
    a, b = cls(seed=5, **SIZES), cls(seed=5, **SIZES)
    a.setup("fit")
    b.setup("fit")
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
    dm = cls(
        seed=0,
        train_size=3000,
        val_size=100,
        test_size=100,
        train_lengths=(3, 4),
        **({"vocab_size": 6} if cls is not LanguagePair else {"num_nouns": 4, "num_verbs": 3, "num_adjectives": 3}),
    )
    dm.setup()
    train = set(sequence_keys(dm.splits["train"].tensors["src"]).tolist())
    for split in ("val", "test"):
        held_out = set(sequence_keys(dm.splits[split].tensors["src"]).tolist())
        assert not train & held_out
    assert len(dm.splits["train"]) < 3000  # some generated examples were held out


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
