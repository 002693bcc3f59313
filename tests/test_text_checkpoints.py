"""The tokenizer of users' text travels with the model: in every checkpoint and run folder, read back by every run
given those weights (test, fine-tuning, `--model.pretrained`), checked against the data's, and used by `translate`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import sacrebleu
import torch

from nlparena.cli import NlpArenaCLI
from nlparena.cli.checkpoints import check_checkpoint_fits
from nlparena.data import TextTokenizer
from nlparena.data.vocab import EOS
from nlparena.errors import ConfigError
from nlparena.models import TranslationModel
from nlparena.models import translation as translation_models
from tests.conftest import QUIET, TINY_MODEL, run_cli
from tests.models.test_classification import TINY_CLASSIFIERS
from tests.models.test_hugging_face import hugging_face_bert

RUN = Path("logs/TextPair/Transformer")
CKPT = RUN / "version_0/checkpoints/last.ckpt"
TEXT = [
    *TINY_MODEL,
    "--data=TextPair",
    "--data.train_file=pairs/train.tsv",
    "--data.val_file=pairs/val.tsv",
    "--data.test_file=pairs/test.tsv",
    "--data.tokenizer.vocab_size=60",  # BPE over the exported words' characters
    "--data.cache_dir=cache",
    "--data.batch_size=16",
    *QUIET,
]
SHORT_FIT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
UNSEEN = "zebra N1 quokka V2 N3\tn1 zz v2\n"  # words (and letters) the tokenizer never saw


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """A folder with LanguagePair's splits exported as text, and a tiny Transformer fitted on them as TextPair."""
    folder = tmp_path_factory.mktemp("text_checkpoints")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        sizes = ["--data.train_size=120", "--data.val_size=12", "--data.test_size=12", "--data.train_lengths=[3, 6]"]
        run_cli("export", "--data=LanguagePair", *sizes, "--out=pairs")
        run_cli("fit", *TEXT, *SHORT_FIT)
    return folder


@pytest.fixture
def made(fitted: Path) -> None:
    shutil.copytree(fitted, Path.cwd(), dirs_exist_ok=True)


def tokenizer_json(path: Path) -> str:
    return torch.load(path, weights_only=True)["tokenizer"]


def copy_the_source(self: TranslationModel, src: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """A model's decoding that gives its source back (then EOS): what comes out is what the tokenizer made of it."""
    out = torch.cat([src, torch.zeros_like(src[:, :1])], dim=1)  # (B, S + 1)
    out[torch.arange(len(src)), (src != 0).sum(1)] = EOS
    return out


def test_every_checkpoint_and_the_run_folder_hold_the_tokenizer_the_data_was_read_with(made):
    trained = next(Path("cache/tokenizers").glob("*/tokenizer.json"))  # the one the data trained
    fingerprint = TextTokenizer.from_file(trained, "trained").fingerprint
    checkpoints = sorted((RUN / "version_0/checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 2  # best and last
    for path in checkpoints:
        assert TextTokenizer.from_json(tokenizer_json(path)).fingerprint == fingerprint, path.name
    assert (RUN / "version_0/tokenizer.json").read_text() == tokenizer_json(CKPT)


def test_a_synthetic_tasks_checkpoint_and_run_folder_have_no_tokenizer():
    sizes = ["--data.train_size=40", "--data.val_size=8", "--data.test_size=8"]
    run_cli("fit", *TINY_MODEL, "--data=Copy", *sizes, *QUIET, *SHORT_FIT)
    run = Path("logs/Copy/Transformer/version_0")
    assert "tokenizer" not in torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert not (run / "tokenizer.json").exists() and (run / "config.yaml").exists()


def test_fine_tuning_on_a_file_with_unseen_words_keeps_the_checkpoints_tokenizer(made):
    Path("other.tsv").write_text(
        "source\ttarget\n" + UNSEEN * 20 + Path("pairs/train.tsv").read_text().split("\n", 1)[1]
    )
    before = tokenizer_json(CKPT)
    run_cli("fit", *TEXT, "--data.train_file=other.tsv", f"--ckpt_path={CKPT}", *SHORT_FIT, "--trainer.max_epochs=2")
    assert tokenizer_json(RUN / "version_1/checkpoints/last.ckpt") == before
    assert (RUN / "version_1/tokenizer.json").read_text() == before
    assert len(list(Path("cache/tokenizers").glob("*/tokenizer.json"))) == 1  # no tokenizer trained on other.tsv


def test_testing_on_a_file_with_unseen_words_reads_it_with_the_checkpoints_tokenizer(made):
    Path("unseen.tsv").write_text("source\ttarget\n" + UNSEEN * 3)
    given = RUN / "version_0/tokenizer.json"  # the checkpoint's own tokenizer, given as a file: allowed
    cli = NlpArenaCLI(
        ["test", *TEXT, "--data.test_file=unseen.tsv", f"--data.tokenizer.file={given}", f"--ckpt_path={CKPT}"]
    )
    assert cli.datamodule.vocab.fingerprint == TextTokenizer.from_json(tokenizer_json(CKPT)).fingerprint
    assert cli.datamodule.vocab.unk_id in cli.datamodule.splits["test"][[0]]["src"].tolist()[0]  # unknown letters
    assert "test/exact_match" in cli.trainer.callback_metrics
    assert (RUN / "version_1/tokenizer.json").read_text() == tokenizer_json(CKPT)


def test_a_tokenizer_file_other_than_the_checkpoints_is_refused_naming_both(made, capsys):
    TextTokenizer.train(["N1 V2 N3", "n1 v2 agr.sg"], "word", 20).save("other.json")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", *TEXT, "--data.tokenizer.file=other.json", f"--ckpt_path={CKPT}")
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("nlparena: error: data.tokenizer.file=other.json: another tokenizer than the one of ")
    assert f"--ckpt_path {CKPT}" in line


def test_the_checkpoint_check_refuses_data_read_with_another_tokenizer():
    ours = TextTokenizer.train(["a b c", "b c d"], "word", 12)
    theirs = TextTokenizer.train(["a b c", "b c d e"], "word", 12)
    checkpoint = {"tokenizer": theirs.to_json(), "vocabulary": theirs.tokens, "state_dict": {}}
    with pytest.raises(ConfigError, match=r"^--ckpt_path x.ckpt: trained with another tokenizer than the one --data"):
        check_checkpoint_fits(checkpoint, "x.ckpt", None, SimpleNamespace(vocab=ours))
    checkpoint.update(tokenizer=ours.to_json(), vocabulary=ours.tokens)
    with pytest.raises(AttributeError):  # past the tokenizer and vocabulary checks, at the model (None here)
        check_checkpoint_fits(checkpoint, "x.ckpt", None, SimpleNamespace(vocab=ours))


def test_translate_tokenizes_raw_text_with_the_checkpoints_tokenizer_and_prints_detokenized_text(
    made, capsys, monkeypatch
):
    monkeypatch.setattr(TranslationModel, "decode", copy_the_source)
    tokenizer = TextTokenizer.from_json(tokenizer_json(CKPT))
    inputs = ["N1 V2 A3 N4 PL", "zebra N1 V2"]
    capsys.readouterr()
    run_cli("translate", f"--ckpt_path={CKPT}", *inputs)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "N1 V2 A3 N4 PL"  # the words back, with their spaces: no pieces, no specials
    assert lines[1] == tokenizer.decode(tokenizer.encode(inputs[1])) and "N1 V2" in lines[1]  # unknown letters dropped


def test_translate_file_prints_a_line_per_line_in_batches(made, capsys, monkeypatch):
    monkeypatch.setattr(TranslationModel, "decode", copy_the_source)
    Path("in.txt").write_text("N1 V2 N3\n\nA1 N2 V3 N4 PL\nN5 V6 N7\nN1 V1 N1\n")
    capsys.readouterr()
    run_cli("translate", f"--ckpt_path={CKPT}", "--file=in.txt", "--batch_size=2")
    assert capsys.readouterr().out.splitlines() == ["N1 V2 N3", "", "A1 N2 V3 N4 PL", "N5 V6 N7", "N1 V1 N1"]


def test_translate_file_names_the_line_of_a_bad_input(made, capsys):
    Path("in.txt").write_text("N1 V2 N3\n" + "N1 " * 400 + "\n")
    with pytest.raises(SystemExit):
        run_cli("translate", f"--ckpt_path={CKPT}", "--file=in.txt")
    assert capsys.readouterr().err.splitlines()[-1].startswith("nlparena: error: --file in.txt line 2: input ")


@pytest.mark.parametrize("option", ["--beam_size=3", "--length_penalty=0.5"])
def test_a_beam_setting_without_decode_translates_by_beam_search(made, capsys, monkeypatch, option):
    beams = []

    def recording(net, src, max_len, beam_size, length_penalty):
        beams.append((beam_size, length_penalty))
        return search(net, src, max_len, beam_size, length_penalty)

    search = translation_models.beam_search
    monkeypatch.setattr(translation_models, "beam_search", recording)
    run_cli("translate", f"--ckpt_path={CKPT}", option, "N1 V2 N3")
    assert beams == [(3, 0.0)] if option == "--beam_size=3" else beams == [(4, 0.5)]  # the model's other setting


def test_a_hugging_face_folder_gives_text_data_its_tokenizer_json(tmp_path):
    texts = ["the dog runs", "a cat sleeps", "the red house", "a small tree"] * 5
    tokenizer = TextTokenizer.train(texts, "wordpiece", 40)
    hugging_face_bert(vocab_size=len(tokenizer), d_model=8).save_pretrained("hf_bert")
    tokenizer.save("hf_bert/tokenizer.json")
    Path("train.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": str(i % 2)}) + "\n" for i, t in enumerate(texts))
    )
    args = [
        *TINY_CLASSIFIERS["BertClassifier"],
        "--model.bert.d_model=8",
        "--model.pretrained=hf:hf_bert",
        "--data=TextClassification",
        "--data.train_file=train.jsonl",
        "--data.val_fraction=0.25",
        "--data.test_fraction=0.25",
        "--data.cache_dir=cache",
    ]
    cli = NlpArenaCLI(args=args, run=False)
    assert cli.datamodule.vocab.fingerprint == tokenizer.fingerprint
    assert not Path("cache/tokenizers").exists() or not list(Path("cache/tokenizers").glob("*/tokenizer.json"))


def test_testing_text_logs_sacrebleu_of_the_detokenized_outputs_in_test_outputs_csv(made, monkeypatch):
    monkeypatch.setattr(TranslationModel, "decode", copy_the_source)
    exported = Path("pairs/test.tsv").read_text().splitlines()[1:]
    copies = [f"{row.split(chr(9))[0]}\t{row.split(chr(9))[0]}" for row in exported[:6]]  # targets a copy gets right
    Path("mixed.tsv").write_text("\n".join(["source\ttarget", *copies, *exported[6:]]) + "\n")
    cli = NlpArenaCLI(["test", *TEXT, "--data.test_file=mixed.tsv", f"--ckpt_path={CKPT}"])
    with Path(cli.trainer.log_dir, "test_outputs.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    outputs, references = [row["output"] for row in rows], [row["reference"] for row in rows]
    assert outputs[:6] == references[:6] and all("▁" not in text for text in outputs + references)  # detokenized
    bleu = sacrebleu.corpus_bleu(outputs, [references]).score
    assert 0 < bleu < 100
    assert cli.trainer.callback_metrics["test/sacrebleu"].item() == pytest.approx(bleu, abs=1e-6)
    chrf = sacrebleu.corpus_chrf(outputs, [references]).score
    assert cli.trainer.callback_metrics["test/chrf"].item() == pytest.approx(chrf, abs=1e-6)
