import copy
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nlparena.cli import NlpArenaCLI
from nlparena.events import read_events
from nlparena.figures import confusion_figure
from nlparena.models import BertClassifier
from nlparena.networks.bert import BertConfig
from tests.conftest import BATCH, D_FF, D_MODEL, HEADS, QUIET, run_cli
from tests.models.test_translation import assert_logged_and_finite

TINY_BERT = [
    f"--model.bert.d_model={D_MODEL}",
    f"--model.bert.n_heads={HEADS}",
    f"--model.bert.d_ff={D_FF}",
    "--model.bert.num_layers=2",
]
TINY_CLASSIFIERS = {
    "BertClassifier": ["--model=BertClassifier", *TINY_BERT],
    "RNNClassifier": ["--model=RNNClassifier", "--model.rnn.embed_dim=10", "--model.rnn.hidden_size=6"],
    "DecoderOnlyClassifier": [
        "--model=DecoderOnlyClassifier",
        f"--model.decoder.d_model={D_MODEL}",
        f"--model.decoder.n_heads={HEADS}",
        f"--model.decoder.d_ff={D_FF}",
        "--model.decoder.num_layers=2",
    ],
}
TINY_SPLITS = ["--data.train_size=90", "--data.val_size=40", "--data.test_size=40", f"--data.batch_size={BATCH + 5}"]
PRETRAIN = ["--model=BertPretraining", *TINY_BERT, "--data=Pretraining", *TINY_SPLITS, *QUIET]


def logged_counts(run_dir: Path, stage: str) -> torch.Tensor:
    """The last confusion matrix a run logged, read back from its TensorBoard text table."""
    return read_events(run_dir).confusion(stage)[1]


@pytest.mark.parametrize("data", ["Sentiment", "SentimentPair"])
@pytest.mark.parametrize("model", TINY_CLASSIFIERS)
def test_fast_dev_run_trains_validates_and_tests_every_classifier_on_every_task(model, data):
    args = [*TINY_CLASSIFIERS[model], f"--data={data}", *TINY_SPLITS, *QUIET]
    cli = NlpArenaCLI(args=[*args, "--trainer.fast_dev_run=2"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2
    assert_logged_and_finite(cli.trainer.callback_metrics, cli.model.logged_metrics())
    (tested,) = cli.trainer.test(cli.model, datamodule=cli.datamodule)
    names = cli.datamodule.class_names
    assert_logged_and_finite(tested, ["test/loss", "test/accuracy", "test/macro_f1", *(f"test/f1/{n}" for n in names)])


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_every_pooling_choice_runs_training_steps(pooling):
    args = (*TINY_CLASSIFIERS["BertClassifier"], f"--model.pooling={pooling}", "--data=Sentiment", *TINY_SPLITS)
    cli = NlpArenaCLI(args=[*args, *QUIET, "--trainer.fast_dev_run=2"], run=False)
    before = copy.deepcopy(cli.model.net.state_dict())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = cli.model.net.state_dict()
    assert cli.trainer.global_step == 2
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert {"classifier.weight", "bert.layers.0.attn.in_proj.weight", "bert.embeddings.tokens.weight"} <= changed
    # only the pooler choice reads (and so trains) BERT's pooler; the others leave it as initialised
    assert ("bert.pooler.weight" in changed) == (pooling == "pooler")
    # and the classifier reads the vector the choice names
    net, batch = cli.model.net.eval(), cli.datamodule.splits["val"][list(range(BATCH))]
    with torch.no_grad():
        states = net.bert(batch["ids"], batch["segments"])  # (B, S, D)
        real = (batch["ids"] != 0).unsqueeze(-1).float()  # (B, S, 1)
        expected = {
            "pooler": torch.tanh(net.bert.pooler(states[:, 0])),
            "cls": states[:, 0],
            "mean": (states * real).sum(1) / real.sum(1),
        }[pooling]
        torch.testing.assert_close(net.summary(batch["ids"], states), expected)


def test_bert_pretraining_logs_mlm_and_nsp_losses_and_accuracies():
    run_cli("fit", *PRETRAIN, "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1")
    tags = set(read_events("logs/Pretraining/BertPretraining/version_0").scalars)
    for stage in ("train", "val"):
        assert {f"{stage}/{name}" for name in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy")} <= tags


def test_logged_confusion_matrix_equals_the_hand_count_of_the_models_predictions():
    args = [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET]
    cli = NlpArenaCLI(args=["fit", *args, "--trainer.max_epochs=1"])
    run_dir = Path(cli.trainer.log_dir)
    model, data = cli.model.eval(), cli.datamodule
    val = data.splits["val"][list(range(len(data.splits["val"])))]
    with torch.no_grad():
        preds = model(val["ids"], val["segments"]).argmax(-1).tolist()
    by_hand = torch.zeros(data.num_classes, data.num_classes, dtype=torch.long)
    for true, pred in zip(val["labels"].tolist(), preds, strict=True):
        by_hand[true, pred] += 1
    assert by_hand.sum() == len(preds) == 40
    assert torch.equal(logged_counts(run_dir, "val"), by_hand)
    logged = read_events(run_dir)
    assert len(logged.images["val/confusion_matrix"]) == 1
    tags = set(logged.scalars)
    names = data.class_names
    assert {f"val/f1/{n}" for n in names} | {f"val/precision/{n}" for n in names} | {"val/macro_f1"} <= tags


def test_test_run_writes_the_confusion_matrix_png():
    args = [*TINY_CLASSIFIERS["RNNClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET]
    run_cli("fit", *args, "--trainer.max_epochs=1")
    run_cli("test", *args, "--ckpt_path=logs/Sentiment/RNNClassifier/version_0/checkpoints/last.ckpt")
    names, test_counts = read_events("logs/Sentiment/RNNClassifier/version_1").confusion("test")
    val_counts = logged_counts(Path("logs/Sentiment/RNNClassifier/version_0"), "val")
    assert test_counts.sum() == 40 and not torch.equal(test_counts, val_counts)
    # the PNG is the figure of the test matrix, drawn anew here from the counts the test logged
    expected = io.BytesIO()
    confusion_figure(test_counts.float(), names, "RNNClassifier, test").savefig(expected, dpi=120)
    png = Path("logs/Sentiment/RNNClassifier/version_1/confusion_matrix_test.png")
    assert png.read_bytes() == expected.getvalue()


def test_loading_a_pretraining_checkpoint_copies_the_encoder_weights_exactly():
    run_cli("fit", *PRETRAIN, "--trainer.max_epochs=1")
    ckpt = "logs/Pretraining/BertPretraining/version_0/checkpoints/last.ckpt"
    pretrained = torch.load(ckpt, weights_only=True)["state_dict"]
    # lr 0: the one training step leaves the weights as loaded
    args = [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET]
    cli = NlpArenaCLI(
        args=["fit", *args, f"--model.pretrained={ckpt}", "--optimizer.init_args.lr=0", "--trainer.max_steps=1"]
    )
    encoder = cli.model.net.bert.state_dict()
    assert encoder.keys() == {k.removeprefix("net.bert.") for k in pretrained if k.startswith("net.bert.")}
    for key, value in encoder.items():
        saved = pretrained[f"net.bert.{key}"]
        if key.endswith("positions.table.weight"):  # pre-training pairs are longer: the rows this data uses
            assert value.shape[0] == cli.model.hparams.max_len < saved.shape[0]
            saved = saved[: value.shape[0]]
        assert torch.equal(value, saved), key
    hparams = cli.model.hparams
    bert = BertConfig(d_model=D_MODEL, n_heads=HEADS, d_ff=D_FF)
    scratch = BertClassifier(bert, vocab_size=hparams.vocab_size, max_len=hparams.max_len, num_classes=4)
    missing, unused = scratch.load_pretrained_encoder(ckpt)
    assert missing == [] and unused and all(k.startswith(("net.mlm", "net.nsp")) for k in unused)


def test_a_classifier_on_translation_data_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_CLASSIFIERS["RNNClassifier"], "--data=Copy")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nlparena: error: --model RNNClassifier trains on classification data but --data Copy")
    assert not Path("logs").exists()


def test_a_missing_pretrained_checkpoint_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", "--model.pretrained=nowhere.ckpt")
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == "nlparena: error: model.pretrained=nowhere.ckpt: no such file"
    )


@pytest.mark.slow
def test_two_process_ddp_gives_the_same_test_confusion_matrix_as_one_process():
    args = [*TINY_CLASSIFIERS["BertClassifier"], "--data=SentimentPair", *TINY_SPLITS, *QUIET]
    run_cli("fit", *args, "--trainer.max_epochs=1")
    ckpt = "logs/SentimentPair/BertClassifier/version_0/checkpoints/last.ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for devices in (1, 2):
        command = ["test", *args, f"--ckpt_path={ckpt}", "--trainer.accelerator=cpu", f"--trainer.devices={devices}"]
        if devices == 2:
            command.append("--trainer.strategy=ddp")  # gloo on CPU; Lightning launches the second process
        subprocess.run([sys.executable, "-m", "nlparena", *command], check=True, env=env, timeout=300)
    one, two = (logged_counts(Path(f"logs/SentimentPair/BertClassifier/version_{v}"), "test") for v in (1, 2))
    assert one.sum() == 40  # every test example counted once, none twice
    assert torch.equal(one, two)


def test_fine_tuning_from_a_checkpoint_with_another_vocabulary_is_refused_in_one_line(capsys):
    run_cli("fit", *PRETRAIN, "--trainer.max_epochs=1")
    ckpt = "logs/Pretraining/BertPretraining/version_0/checkpoints/last.ckpt"
    before = {str(p): p.stat().st_mtime_ns for p in Path("logs").rglob("*") if p.is_file()}
    args = [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", "--data.num_positive=9", *TINY_SPLITS, *QUIET]
    with pytest.raises(SystemExit):
        run_cli("fit", *args, f"--model.pretrained={ckpt}")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"nlparena: error: model.pretrained={ckpt}: pre-trained on another vocabulary")
    assert before.items() <= {str(p): p.stat().st_mtime_ns for p in Path("logs").rglob("*") if p.is_file()}.items()
