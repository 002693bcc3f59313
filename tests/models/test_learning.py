"""Learning tests: a model must actually solve a task (slow, still run in CI)."""

from pathlib import Path

import pytest

from nlparena.cli import NlpArenaCLI
from tests.conftest import QUIET, run_cli

COPY = [
    "--data=Copy",
    "--data.train_lengths=[3, 8]",
    "--data.val_size=300",
    "--data.test_size=300",
    "--data.batch_size=32",
    "--seed_everything=0",
]
MODELS = {
    "Transformer": [
        "--model=Transformer",
        "--model.transformer.d_model=32",
        "--model.transformer.n_heads=2",
        "--model.transformer.d_ff=64",
        "--model.transformer.dropout=0.0",
        "--data.train_size=4000",
        "--optimizer.init_args.lr=0.003",
        "--trainer.max_epochs=8",
    ],
    "Seq2Seq": [
        "--model=Seq2Seq",
        "--model.rnn.embed_dim=32",
        "--model.rnn.hidden_size=128",
        "--model.rnn.dropout=0.0",
        "--model.label_smoothing=0.0",
        "--data.train_size=8000",
        "--optimizer.init_args.lr=0.002",
        "--lr_scheduler=CosineAnnealingLR",  # a fixed lr leaves the bottleneck model wobbling around 0.9
        "--lr_scheduler.T_max=10",
        "--trainer.max_epochs=10",
    ],
    "Seq2SeqAttention": [
        "--model=Seq2SeqAttention",
        "--model.rnn.embed_dim=32",
        "--model.rnn.hidden_size=64",
        "--model.rnn.dropout=0.0",
        "--data.train_size=4000",
        "--optimizer.init_args.lr=0.003",
        "--trainer.max_epochs=3",
    ],
    "DecoderOnly": [
        "--model=DecoderOnly",
        "--model.decoder.d_model=32",
        "--model.decoder.n_heads=2",
        "--model.decoder.d_ff=64",
        "--model.decoder.num_layers=2",
        "--model.decoder.dropout=0.0",
        "--model.decoder.attention=prefix",
        "--data.train_size=4000",
        "--optimizer.init_args.lr=0.003",
        "--trainer.max_epochs=16",  # one stack learns to align target and source more slowly than cross-attention
        "--trainer.callbacks+=EarlyStopping",
        "--trainer.callbacks.monitor=val/exact_match",
        "--trainer.callbacks.mode=max",
        "--trainer.callbacks.stopping_threshold=0.98",
        "--trainer.callbacks.patience=16",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_each_model_learns_copy_to_95_percent_exact_match_and_translate_prints_its_output(model, capsys):
    cli = NlpArenaCLI(args=["fit", *COPY, *MODELS[model], *QUIET])
    assert cli.trainer.callback_metrics["val/exact_match"] >= 0.95
    (test,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="last")
    assert test["test/exact_match"] >= 0.95

    vocab, sources = cli.datamodule.vocab, cli.datamodule.splits["test"][list(range(40))]["src"]
    texts = [vocab.decode(src) for src in sources]
    capsys.readouterr()
    run_cli("translate", f"--ckpt_path={Path(cli.trainer.log_dir) / 'checkpoints/last.ckpt'}", *texts)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [vocab.decode(out) for out in cli.model.decode(sources)]  # the model's own output, as text
    assert sum(out == text for out, text in zip(printed, texts, strict=True)) >= 0.95 * len(texts)  # copies
