"""sacreBLEU's BLEU and chrF of the detokenized test outputs of a translation model, with their signatures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml

from nlparena.cli import NlpArenaCLI
from nlparena.compare.config import Record, Trial, load_comparison
from nlparena.compare.report import write_report
from nlparena.data import Copy
from nlparena.data.vocab import EOS, NUM_SPECIALS, Vocab
from nlparena.models import TranslationModel
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, evaluate_in_one_and_two_processes, run_cli, scalars

SYMBOLS = 10  # Copy's default vocab_size


class SentenceVocab(Vocab):
    """A vocabulary whose text is detokenized: the sentence ends with a full stop attached to its last word."""

    detokenizes = True

    def decode(self, ids, strip: bool = True) -> str:
        text = super().decode(ids, strip)
        return f"{text}." if text else text


class DetokenizingCopy(Copy):
    """Copy, whose vocabulary detokenizes as a tokenizer of users' text does."""

    def build_task(self):
        task = super().build_task()
        task.vocab = SentenceVocab(task.vocab.tokens[NUM_SPECIALS:])
        return task


def copy_with_mistakes(self: TranslationModel, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """A model's decoding that copies the source, with the third word of every other sentence wrong: a BLEU between
    0 and 100."""
    out = torch.cat([src, torch.zeros_like(src[:, :1])], dim=1)  # (B, S + 1)
    out[torch.arange(len(src)), (src != 0).sum(1)] = EOS
    out[1::2, 2] = NUM_SPECIALS + (out[1::2, 2] - NUM_SPECIALS + 1) % SYMBOLS  # sources have 3 words or more
    return out


def fit_and_test(data: str) -> NlpArenaCLI:
    args = [*TINY_MODEL, f"--data={data}", *TINY_DATA, *QUIET]
    run_cli("fit", *args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1")
    name = data.rsplit(".", 1)[-1]
    return NlpArenaCLI(args=["test", *args, f"--ckpt_path=logs/{name}/Transformer/version_0/checkpoints/last.ckpt"])


def test_outputs(run_dir: str) -> tuple[list[str], list[str]]:
    with Path(run_dir, "test_outputs.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    return [row["output"] for row in rows], [row["reference"] for row in rows]


test_outputs.__test__ = False  # a helper, not a test


def test_logged_sacrebleu_and_chrf_are_sacrebleus_scores_of_the_detokenized_test_outputs(monkeypatch):
    monkeypatch.setattr(TranslationModel, "decode", copy_with_mistakes)
    cli = fit_and_test(f"{__name__}.DetokenizingCopy")
    outputs, references = test_outputs(cli.trainer.log_dir)
    assert len(outputs) == 20 and all(text.endswith(".") for text in outputs + references)  # detokenized text
    bleu, chrf = sacrebleu.corpus_bleu(outputs, [references]), sacrebleu.corpus_chrf(outputs, [references])
    assert 0 < bleu.score < 100
    logged = cli.trainer.callback_metrics
    assert logged["test/sacrebleu"].item() == pytest.approx(bleu.score, abs=1e-6)
    assert logged["test/chrf"].item() == pytest.approx(chrf.score, abs=1e-6)
    saved = json.loads(Path(cli.trainer.log_dir, "sacrebleu.json").read_text())
    assert saved["test/sacrebleu"]["score"] == pytest.approx(bleu.score, abs=1e-6)
    assert saved["test/sacrebleu"]["signature"].startswith("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|")
    assert saved["test/chrf"]["signature"].startswith("chrF2|nrefs:1|")


def test_data_that_does_not_detokenize_gets_no_sacrebleu(monkeypatch):
    monkeypatch.setattr(TranslationModel, "decode", copy_with_mistakes)
    cli = fit_and_test("Copy")
    assert "test/exact_match" in cli.trainer.callback_metrics
    assert not {"test/sacrebleu", "test/chrf"} & set(cli.trainer.callback_metrics)
    assert not Path(cli.trainer.log_dir, "sacrebleu.json").exists()


def test_the_compare_report_shows_the_sacrebleu_columns_and_names_each_signature_once(monkeypatch):
    monkeypatch.setattr(TranslationModel, "decode", copy_with_mistakes)
    run_dir = Path(fit_and_test(f"{__name__}.DetokenizingCopy").trainer.log_dir)
    runs = [{"name": name, "args": TINY_MODEL} for name in ("first", "second")]
    Path("text.yaml").write_text(yaml.safe_dump({"name": "text", "runs": runs}))
    comparison = load_comparison(Path("text.yaml"))
    marker = {"headline_metric": "val/exact_match", "headline_mode": "max", "model": "Transformer"}
    records = [Record(Trial(run), "finished", run_dir, marker) for run in comparison.runs]  # two trials, one folder
    report = write_report(comparison, records).read_text()
    signatures = json.loads((run_dir / "sacrebleu.json").read_text())
    for name, entry in signatures.items():
        assert report.count(entry["signature"]) == 1, name
        assert f"`{name}` is `{entry['signature']}`" in report
    header = next(line for line in report.splitlines() if line.startswith("| run | seeds |"))
    assert "test/sacrebleu" in header and "test/chrf" in header


def test_two_processes_log_and_write_the_scores_of_the_whole_split_as_one_process_does():
    args = [*TINY_MODEL, f"--data={__name__}.DetokenizingCopy", *TINY_DATA, *QUIET, "--data.test_size=23"]
    run_cli("fit", *args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1")
    evaluate_in_one_and_two_processes("test", args, "logs/DetokenizingCopy/Transformer/version_0/checkpoints/last.ckpt")
    one, two = (Path(f"logs/DetokenizingCopy/Transformer/version_{version}") for version in (1, 2))
    outputs, references = test_outputs(two)
    assert len(outputs) == 23
    saved = [json.loads((run / "sacrebleu.json").read_text()) for run in (one, two)]
    assert saved[0] == saved[1]
    assert saved[1]["test/chrf"]["score"] == pytest.approx(sacrebleu.corpus_chrf(outputs, [references]).score, abs=1e-6)
    for run in (one, two):
        logged = scalars(run)
        assert logged["test/chrf"][-1][1] == pytest.approx(saved[1]["test/chrf"]["score"], rel=1e-6), run
        assert logged["test/sacrebleu"][-1][1] == pytest.approx(saved[1]["test/sacrebleu"]["score"], rel=1e-6), run
