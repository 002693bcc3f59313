import glob
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from torchmetrics.functional.text import bleu_score

from nlparena.cli import NlpArenaCLI
from nlparena.data.vocab import NUM_SPECIALS, PAD
from nlparena.events import read_events
from nlparena.models import Transformer
from nlparena.models.translation import ids_to_text
from nlparena.networks.decoding import sequence_log_prob
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS, VOCAB, run_cli

TASKS = ["Copy", "Reverse", "Sort", "LanguagePair"]


def assert_logged_and_finite(metrics: dict[str, torch.Tensor], names: list[str]) -> None:
    """Each of `names` (or fnmatch patterns) matches a logged metric, and every logged metric is finite."""
    for name in names:
        assert any(fnmatch(key, name) for key in metrics), (name, sorted(metrics))
    for key, value in metrics.items():
        assert torch.isfinite(torch.as_tensor(value)).all(), key


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", TINY_MODELS)
def test_fast_dev_run_trains_validates_and_tests_every_model_on_every_task(model, task):
    args = [*TINY_MODELS[model], f"--data={task}", *TINY_DATA, *QUIET]
    cli = NlpArenaCLI(args=[*args, "--trainer.fast_dev_run=2"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2
    assert_logged_and_finite(cli.trainer.callback_metrics, cli.model.logged_metrics())
    beam = NlpArenaCLI(
        args=[*args, "--trainer.fast_dev_run=1", "--model.decode=beam", "--model.beam_size=3"], run=False
    )
    beam.model.load_state_dict(cli.model.state_dict())
    (tested,) = beam.trainer.test(beam.model, datamodule=beam.datamodule)
    assert_logged_and_finite(tested, [f"test/{name}" for name in ("loss", "token_accuracy", "exact_match", "bleu")])
    # the trained model's beam search: with one beam it is greedy decoding; with three, never less likely than greedy
    trained, src = beam.model.eval(), beam.datamodule.splits["test"][list(range(8))]["src"]
    trained.decoding, trained.length_penalty = "greedy", 0.0
    greedy = trained.decode(src)
    trained.decoding, trained.beam_size = "beam", 1
    assert torch.equal(trained.decode(src), greedy)
    trained.beam_size = 3
    with torch.no_grad():
        greedy_logp = sequence_log_prob(trained.net, src, greedy)
        beam_logp = sequence_log_prob(trained.net, src, trained.decode(src))
    assert (beam_logp >= greedy_logp - 1e-4).all(), (beam_logp, greedy_logp)


@pytest.mark.parametrize("model", ["Transformer", "Seq2SeqAttention", "DecoderOnly"])
def test_attention_maps_reach_tensorboard_each_validation_and_png_files_at_test(model):
    args = (*TINY_MODELS[model], "--data=Reverse", *TINY_DATA, *QUIET)
    run_cli("fit", *args, "--trainer.max_epochs=2")
    images = read_events(f"logs/Reverse/{model}/version_0").images
    assert sorted(images) == [f"val/attention_map/{i}" for i in range(3)]
    assert len(images["val/attention_map/0"]) == 2  # one per validation epoch
    run_cli("test", *args, f"--ckpt_path=logs/Reverse/{model}/version_0/checkpoints/last.ckpt")
    pngs = sorted(p.name for p in Path(f"logs/Reverse/{model}/version_1/attention_maps").iterdir())
    assert pngs == ["test_example0.png", "test_example1.png", "test_example2.png"]
    assert Path(f"logs/Reverse/{model}/version_1/attention_maps/test_example0.png").read_bytes()[:4] == b"\x89PNG"


def test_a_model_without_attention_draws_no_attention_maps():
    run_cli("fit", *TINY_MODELS["Seq2Seq"], "--data=Reverse", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")
    assert read_events("logs/Reverse/Seq2Seq/version_0").images == {}


def test_tensorboard_shows_losses_metrics_learning_rate_and_samples():
    run_cli(
        "fit",
        *TINY_MODEL,
        "--data=Reverse",
        *TINY_DATA,
        *QUIET,
        "--trainer.max_epochs=2",
        "--trainer.log_every_n_steps=1",
    )
    run_dir = Path("logs/Reverse/Transformer/version_0")
    logged = read_events(run_dir)
    scalars = set(logged.scalars)
    expected = {
        "train/loss",
        "train/token_accuracy",
        "train/exact_match",
        "val/loss",
        "val/token_accuracy",
        "val/exact_match",
        "val/bleu",
        "lr-AdamW",
    }
    assert expected <= scalars, expected - scalars
    assert any(tag.startswith("val/exact_match_by_length/") for tag in scalars)
    assert any(tag.startswith("val/token_accuracy_by_length/") for tag in scalars)
    assert len(logged.scalars["val/exact_match"]) == 2  # one per epoch
    samples = logged.texts["val/samples"][-1][1]
    assert samples.startswith("| source | reference | output |") and samples.count("\n") == 2 + 4 - 1
    assert (run_dir / "config.yaml").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert glob.glob(str(run_dir / "checkpoints" / "best-*.ckpt"))


def test_a_second_run_gets_a_new_folder():
    for _ in range(2):
        run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1")
    assert sorted(p.name for p in Path("logs/Copy/Transformer").iterdir()) == ["version_0", "version_1"]


def test_two_runs_with_the_same_seed_end_with_identical_metrics_and_weights():
    finals = []
    for name in ("a", "b"):
        run_cli(
            "fit",
            *TINY_MODEL,
            "--data=Reverse",
            *TINY_DATA,
            *QUIET,
            "--trainer.max_epochs=2",
            "--seed_everything=7",
            "--model.transformer.dropout=0.2",
            f"--trainer.logger.init_args.name={name}",
        )
        run_dir = Path(f"logs/{name}/version_0")
        metrics = read_events(run_dir).scalars
        weights = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
        finals.append((metrics, weights))
    (metrics_a, weights_a), (metrics_b, weights_b) = finals
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


def test_checkpoint_loads_back_with_its_hyperparameters():
    cli = NlpArenaCLI(args=[*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    trained = cli.model.eval()
    model = Transformer.load_from_checkpoint("logs/Copy/Transformer/version_0/checkpoints/last.ckpt").eval()
    assert model.hparams.transformer["d_model"] == 16 and model.hparams.vocab_size == 16  # 10 symbols + 6 specials
    assert model.hparams.transformer["num_encoder_layers"] == 1 and len(model.net.encoder) == 1
    # the trained weights, not a fresh initialisation of the same sizes
    assert trained.state_dict().keys() == model.state_dict().keys()
    for key, value in trained.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    src = cli.datamodule.splits["val"][list(range(8))]["src"]
    assert torch.equal(model.decode(src), trained.decode(src))


def test_bleu_by_length_is_the_corpus_bleu_of_each_source_length_buckets_examples(monkeypatch):
    cli = NlpArenaCLI(args=[*TINY_MODEL, "--data=Copy", *TINY_DATA, "--data.val_lengths=[1, 30]"], run=False)
    model, datamodule = cli.model, cli.datamodule
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    src, tgt = batch["src"], batch["tgt"]
    # outputs with some right n-grams: every other row the reference itself, the others with their first token wrong
    output = tgt.clone()
    output[1::2, 0] = (output[1::2, 0] + 1 - NUM_SPECIALS) % (VOCAB - NUM_SPECIALS) + NUM_SPECIALS
    monkeypatch.setattr(model, "decode", lambda src, max_len=None: output)
    model._evaluate(batch, 0, "val")  # no Trainer: the metrics update, nothing is logged
    lengths = (src != PAD).sum(1)
    metrics = model.val_metrics
    buckets = metrics.exact_match_by_length.bucket_of(lengths)
    assert len(set(buckets.tolist())) >= 3
    values = []
    for bucket in set(buckets.tolist()):
        rows = (buckets == bucket).nonzero().flatten().tolist()
        outputs, references = (
            [ids_to_text(output[i : i + 1])[0] for i in rows],
            [ids_to_text(tgt[i : i + 1]) for i in rows],
        )
        expected = bleu_score(outputs, references).item()
        assert metrics.bleu_by_length[bucket].compute() == pytest.approx(expected, abs=1e-6), bucket
        values.append(expected)
    # the buckets differ, so a value from the wrong bucket's examples (or from all examples) would be caught
    assert len(set(values)) > 1 and any(0 < v < 1 for v in values)
