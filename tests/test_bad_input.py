"""Every bad input is one line `nlparena: error: ...` (at most 300 characters, naming the key or file), exit status 2,
no traceback, and nothing new under `logs/` (an earlier run's logs untouched): CLI keys and values, config files,
checkpoints, the file system, `translate`, `compare` and `schedule`."""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from tokenizers import Tokenizer, models

from nlparena.data import Sentiment
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS, run_cli
from tests.models.test_classification import TINY_BERT, TINY_CLASSIFIERS, TINY_SPLITS
from tests.models.test_hugging_face import hugging_face_bert

CKPT = "logs/Copy/Transformer/version_0/checkpoints/last.ckpt"  # made once per module by `made_once`
EVAL = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET]
FIT = [*EVAL, "--trainer.max_epochs=1"]
RNN_SENTIMENT = [*TINY_CLASSIFIERS["RNNClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET, "--trainer.max_epochs=1"]
BERT_SENTIMENT = [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET]
COPY_DEFAULT_SIZES = [*TINY_MODEL, "--data=Copy", *QUIET]  # data.train_size 10000, ...
# root writes in any folder whatever its mode; /proc refuses even root
READ_ONLY = "/proc/nlparena-logs" if os.geteuid() == 0 else "read_only/logs"
BROKEN = {  # a checkpoint path that is not a checkpoint, by what it is
    "missing": "nowhere/last.ckpt",
    "empty": "empty.ckpt",
    "truncated": "truncated.ckpt",
    "text": "text.ckpt",
    "folder": "folder.ckpt",
}
FILES = {
    "empty.yaml": "",
    "comment.yaml": "# nothing but a comment\n",
    "list.yaml": "- trainer\n- model\n",
    "scalar.yaml": "42\n",
    "duplicate.yaml": "trainer:\n  max_epochs: 1\n  max_epochs: 2\n",
    "duplicate_top.yaml": "model: Transformer\nmodel: Seq2Seq\n",
    "invalid.yaml": "trainer: [max_epochs\n",
    "unknown_key.yaml": "trainerx:\n  max_epochs: 1\n",
    "bad_value.yaml": "trainer:\n  max_epochs: -2\n",
    "prefix_key.yaml": "trainer:\n  max_epoch: 2\n",
    "schedule_only.yaml": "optimizer:\n  class_path: SGD\n  init_args:\n    lr: 0.1\n"
    "lr_scheduler:\n  class_path: StepLR\n  init_args:\n    step_size: 1\ntrainer:\n  max_epochs: 2\n",
    "export_data_5.yaml": "trainer:\n  max_epochs: 1\nmodel: Transformer\ndata: 5\n",
    "data_is_a_file.yaml": "data: text/pairs.tsv\n",
    "typo_key.yaml": "model:\n  class_path: Seq2SeqAttention\n  init_args:\n    rnn:\n      hiden_size: 64\n",
    "a_file": "not a folder\n",
    "empty.ckpt": "",
    "text.ckpt": "hello, not a checkpoint\n",
}
TINY_RUN = {"name": "tiny", "args": TINY_MODEL}
LR = "optimizer.init_args.lr"


def search_of(space: dict, **settings) -> dict:
    """A compare config's `search:` (a budget of 2 TPE trials) with `space` and other `settings`."""
    return {"trials": 2, "space": space, **settings}


# `search:` refusals (issue 26): compare config name -> (its `search:`, what the one line says)
SEARCHES = {
    "unknown_key": (search_of({"optimizer.init_args.lrr": [0.1]}), "--optimizer.init_args.lrr: no such key"),
    "low_not_below_high": (search_of({LR: {"low": 0.1, "high": 0.01}}), f"search.space.{LR}: low 0.1 >= high 0.01"),
    "log_from_zero": (
        search_of({LR: {"low": 0.0, "high": 0.1, "log": True}}),
        f"search.space.{LR}: log: true needs low > 0 (got low 0.0)",
    ),
    "empty_choice": (search_of({LR: []}), f"search.space.{LR}=[]: must be a non-empty list of values"),
    "zero_trials": (search_of({LR: [0.1]}, trials=0), "search.trials=0: must be at least 1"),
    "unknown_sampler": (search_of({LR: [0.1]}, sampler="cma"), "search.sampler='cma': choose one of tpe, random, grid"),
    "unknown_pruner": (search_of({LR: [0.1]}, pruner="hyperband"), "search.pruner='hyperband': choose one of asha"),
    "grid_with_range": (
        search_of({LR: {"low": 0.001, "high": 0.1}}, sampler="grid"),
        f"search.space.{LR}: a range, but the grid sampler takes lists of values only",
    ),
    "grid_smaller_than_trials": (
        search_of({LR: [0.1, 0.01]}, sampler="grid", trials=3),
        "search.trials=3: more than the 2 points of tiny's grid",
    ),
    "negative_prune_after": (search_of({LR: [0.1]}, prune_after=-1), "search.prune_after=-1: must be a whole number"),
    "sweep": (None, "sweep: replaced by search:; write the grid as `search: {sampler: grid, space: {KEY: [VALUE"),
}
SHARED = {"args": ["--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=1"]}
COMPARE = {  # file name -> content of a compare config
    "unknown_key": {"shared": SHARED, "runs": [TINY_RUN], "trainer": {"max_epochs": 1}},
    "unknown_run_key": {"shared": SHARED, "runs": [{"name": "a", "arg": TINY_MODEL}]},
    "duplicate_names": {"shared": SHARED, "runs": [TINY_RUN, TINY_RUN]},
    "unsafe_name": {"shared": SHARED, "runs": [{**TINY_RUN, "name": "../escape"}]},
    "no_runs": {"shared": SHARED, "runs": []},
    "runs_not_a_list": {"shared": SHARED, "runs": "tiny"},
    "run_without_name": {"shared": SHARED, "runs": [{"args": TINY_MODEL}]},
    "target_not_a_number": {"shared": SHARED, "target": "high", "runs": [TINY_RUN]},
    "args_not_strings": {"shared": {"args": [1, 2]}, "runs": [TINY_RUN]},
    "missing_run_config": {"shared": SHARED, "runs": [{**TINY_RUN, "configs": ["nowhere.yaml"]}]},
    "missing_shared_config": {"shared": {**SHARED, "configs": ["nowhere.yaml"]}, "runs": [TINY_RUN]},
    "bad_value_in_last_run": {
        "shared": SHARED,
        "runs": [TINY_RUN, {"name": "rnn", "args": ["--model=Seq2Seq", "--model.rnn.hidden_size=0"]}],
    },
    "negative_lr_in_run": {"shared": SHARED, "runs": [{"name": "a", "args": [*TINY_MODEL, "--optimizer.lr=-1"]}]},
    "prefix_option_in_run": {"shared": SHARED, "runs": [{"name": "a", "args": [*TINY_MODEL, "--trainer.max_epoch=2"]}]},
    "devices_0_in_run": {"shared": SHARED, "runs": [{"name": "a", "args": [*TINY_MODEL, "--trainer.devices=0"]}]},
    "seeds_not_a_list": {"shared": SHARED, "seeds": 5, "runs": [TINY_RUN]},
    "seeds_negative": {"shared": SHARED, "seeds": [0, -1], "runs": [TINY_RUN]},
    "baseline_not_a_run": {"shared": SHARED, "baseline": "nobody", "runs": [TINY_RUN]},
    "sweep_not_a_mapping": {"shared": SHARED, "sweep": ["optimizer.init_args.lr"], "runs": [TINY_RUN]},
    "sweep_in_run": {"shared": SHARED, "runs": [{**TINY_RUN, "sweep": {"model.transformer.d_model": [16, 0]}}]},
    "search_not_a_mapping": {"shared": SHARED, "search": ["optimizer.init_args.lr"], "runs": [TINY_RUN]},
    "search_repeated_value": {"shared": SHARED, "search": search_of({LR: [0.1, 0.1]}), "runs": [TINY_RUN]},
    "search_bad_key": {"shared": SHARED, "search": search_of({"optimizer lr": [0.1]}), "runs": [TINY_RUN]},
    "search_bad_value": {
        "shared": SHARED,
        "search": search_of({LR: [0.1]}),
        "runs": [{**TINY_RUN, "search": {"space": {"model.transformer.d_model": [16, 0]}}}],
    },
    "slurm_not_a_mapping": {"shared": SHARED, "slurm": "gpu", "runs": [TINY_RUN]},
    "monitor_never_logged": {
        "shared": SHARED,
        "runs": [
            {
                "name": "a",
                "args": [*TINY_MODEL, "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val/nothing"],
            }
        ],
    },
    "stop_at_target_without_target": {"shared": SHARED, "stop_at_target": True, "runs": [TINY_RUN]},
}


@pytest.fixture(scope="module")
def made_once(tmp_path_factory) -> Path:
    """A folder with an earlier run's logs and checkpoint (a tiny Transformer on Copy), broken checkpoints, config
    files and compare configs; each case works on a copy of it."""
    folder = tmp_path_factory.mktemp("bad_input")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        run_cli("fit", *FIT, "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1")
        for name, text in FILES.items():
            Path(name).write_text(text)
        data = Path(CKPT).read_bytes()
        Path("truncated.ckpt").write_bytes(data[: len(data) // 2])
        Path("folder.ckpt").mkdir()
        torch.save({"state_dict": {}, "hyper_parameters": {}}, "foreign.ckpt")  # a checkpoint, but not ours
        Path("compare").mkdir()
        for name, config in COMPARE.items():
            Path(f"compare/{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for name, (search, _) in SEARCHES.items():
            config = {"shared": SHARED, "runs": [TINY_RUN]}
            config |= {"search": search} if search else {"sweep": {LR: [0.1, 0.01]}}
            Path(f"compare/search_{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        ok = {"shared": SHARED, "runs": [TINY_RUN], "search": search_of({LR: [0.1]})}  # valid: for --storage's cases
        Path("compare/search_ok.yaml").write_text(yaml.safe_dump(ok, sort_keys=False))
        Path("compare/no_search.yaml").write_text(yaml.safe_dump({"shared": SHARED, "runs": [TINY_RUN]}))
        Path("compare/duplicate_key.yaml").write_text("name: a\nname: b\nruns: []\n")
        Path("compare/empty.yaml").write_text("")
        Path("compare/list.yaml").write_text("- runs\n")
        Path("compare/invalid.yaml").write_text("runs: [\n")
        if READ_ONLY.startswith("read_only"):
            Path("read_only").mkdir(mode=0o555)
        hugging_face_bert(vocab_size=Sentiment().vocab_size, d_model=8).save_pretrained("hf_bert")
        write_hostile_files()
        write_text_files()
    return folder


# -- hostile input and broken files (issue 22) -----------------------------------------------------------------------
def billion_laughs(depth: int = 9) -> str:
    """YAML whose aliases nest `depth` deep, 9 to a list: 9 ** depth values once written out, a few lines of file."""
    names = "abcdefghijklmnopqrstuvwxyz"[:depth]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(9 * ['x'])}]"]
    lines += [f"{name}: &{name} [{', '.join(9 * ['*' + prev])}]" for prev, name in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


def write_hostile_files() -> None:
    """The files of the cases below, in the current folder (`made_once`)."""
    Path("laughs.yaml").write_text(billion_laughs())
    Path("compare/laughs.yaml").write_text(billion_laughs())
    shutil.copytree("hf_bert", "hf_broken_config")
    Path("hf_broken_config/config.json").write_text('{"model_type": "bert", "hidden_size": ')  # cut short
    shutil.copytree("hf_bert", "hf_broken_weights")
    Path("hf_broken_weights/model.safetensors").write_bytes(b"not safetensors")


HOSTILE_CASES: dict[str, tuple[list[str], str]] = {
    "config-billion-laughs": (["fit", "-c", "laughs.yaml", *FIT], "--config laughs.yaml: its aliases expand to more"),
    "schedule-config-billion-laughs": (["schedule", "-c", "laughs.yaml", *FIT], "--config laughs.yaml: its aliases"),
    "compare-config-billion-laughs": (["compare", "-c", "compare/laughs.yaml"], "compare/laughs.yaml: its aliases"),
    "translate-beam-size-1000000": (
        ["translate", f"--ckpt_path={CKPT}", "--decode=beam", "--beam_size=1000000", "3 4"],
        "--beam_size 1000000: must be at most 16, the size of this model's vocabulary",
    ),
    "pretrained-hf-broken-config-json": (
        ["fit", *BERT_SENTIMENT, "--model.pretrained=hf:hf_broken_config"],
        "model.pretrained=hf:hf_broken_config: hf_broken_config/config.json is not a Hugging Face config",
    ),
    "pretrained-hf-broken-weights": (
        ["fit", *BERT_SENTIMENT, "--model.pretrained=hf:hf_broken_weights", "--model.bert.d_model=8"],
        "hf_broken_weights/model.safetensors cannot be read as weights",
    ),
    "schedule-out-read-only": (["schedule", *FIT, f"--out={READ_ONLY}/lr.png"], f"--out {READ_ONLY}/lr.png: "),
}


# -- users' own text files (issue 23): each refusal names the file, and the line or column where it applies ----------
TEXT_FILES: dict[str, str | bytes] = {
    "text/pairs.tsv": "source\ttarget\n" + "".join(f"a b c{i}\tx y{i}\n" for i in range(12)),
    "text/empty.tsv": "",
    "text/columns.tsv": "src\ttgt\na\tb\n",
    "text/stray_tab.tsv": "source\ttarget\na\tb\nc\td\te\n",
    "text/short_row.csv": "source,target\na,b\nc\n",
    "text/latin1.tsv": b"source\ttarget\na\tb\ncaf\xe9\tc\n",
    "text/not_object.jsonl": '{"source": "a", "target": "b"}\n["c", "d"]\n',
    "text/lacks_key.jsonl": '{"source": "a", "target": "b"}\n{"source": "c"}\n',
    "text/source.txt": "a\nb\nc\n",
    "text/target.txt": "x\ny\n",
    "text/labelled.jsonl": "".join(f'{{"text": "w{i} v", "label": "{("bad", "good")[i % 2]}"}}\n' for i in range(12)),
    "text/val_labels.jsonl": '{"text": "a", "label": "bad"}\n{"text": "b", "label": "maybe"}\n',
    "text/blank.txt": "\n \n\n",
    "text/corpus.txt": "one two.\nthree four.\n\nfive six.\nseven.\n" * 3,
    "text/not_a_tokenizer.json": '{"version": "1.0"}',
}
TEXT = ["--data.cache_dir=text/cache", *QUIET, "--trainer.max_epochs=1"]
PAIR = [*TINY_MODEL, "--data=TextPair", *TEXT]
LABELLED = [*TINY_CLASSIFIERS["RNNClassifier"], "--data=TextClassification", *TEXT]
CORPUS = ["--model=BertPretraining", *TINY_BERT, "--data=TextCorpus", *TEXT]


def write_text_files() -> None:
    """The files of the cases below, in the current folder (`made_once`)."""
    Path("text").mkdir()
    for name, content in TEXT_FILES.items():
        if isinstance(content, bytes):
            Path(name).write_bytes(content)
        else:
            Path(name).write_text(content)
    Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}, unk_token="[UNK]")).save(
        "text/no_mask.json"
    )


TEXT_CASES: dict[str, tuple[list[str], str]] = {
    "text-train-file-missing": (
        ["fit", *PAIR, "--data.train_file=text/nowhere.tsv"],
        "data.train_file=text/nowhere.tsv: text/nowhere.tsv: no such file",
    ),
    "text-train-file-empty": (["fit", *PAIR, "--data.train_file=text/empty.tsv"], "text/empty.tsv is empty"),
    "text-column-not-in-file": (
        ["fit", *PAIR, "--data.train_file=text/columns.tsv"],
        "text/columns.tsv has no column 'source' (its columns: src, tgt)",
    ),
    "text-tsv-stray-tab": (
        ["fit", *PAIR, "--data.train_file=text/stray_tab.tsv"],
        "text/stray_tab.tsv:3: 3 fields, but the header has 2",
    ),
    "text-csv-short-row": (
        ["fit", *PAIR, "--data.train_file=text/short_row.csv"],
        "text/short_row.csv:3: 1 fields, but the header has 2",
    ),
    "text-not-utf8": (
        ["fit", *PAIR, "--data.train_file=text/latin1.tsv"],
        "text/latin1.tsv:3: not UTF-8 text (byte 0xe9 at column 4)",
    ),
    "text-json-line-not-an-object": (
        ["fit", *PAIR, "--data.train_file=text/not_object.jsonl"],
        "text/not_object.jsonl:2: not a JSON object",
    ),
    "text-json-line-lacks-key": (
        ["fit", *PAIR, "--data.train_file=text/lacks_key.jsonl"],
        "text/lacks_key.jsonl:2: no key 'target' (its keys: source)",
    ),
    "text-aligned-files-of-different-lengths": (
        ["fit", *PAIR, "--data.source_file=text/source.txt", "--data.target_file=text/target.txt"],
        "text/source.txt has 3 lines but text/target.txt has 2 lines",
    ),
    "text-val-file-missing": (
        ["fit", *PAIR, "--data.train_file=text/pairs.tsv", "--data.val_file=text/nowhere.tsv"],
        "data.val_file=text/nowhere.tsv: text/nowhere.tsv: no such file",
    ),
    "text-val-label-not-in-training": (
        ["fit", *LABELLED, "--data.train_file=text/labelled.jsonl", "--data.val_file=text/val_labels.jsonl"],
        "text/val_labels.jsonl:2: label 'maybe' of a validation row has no training row in text/labelled.jsonl",
    ),
    "text-given-label-without-training-row": (
        ["fit", *LABELLED, "--data.train_file=text/labelled.jsonl", "--data.labels=[bad, good, other]"],
        "data.labels: class 'other' has no training row in text/labelled.jsonl",
    ),
    "text-label-not-given": (
        ["fit", *LABELLED, "--data.train_file=text/labelled.jsonl", "--data.labels=[bad, other]"],
        "data.labels: text/labelled.jsonl:2: label 'good' is not one of bad, other",
    ),
    "text-corpus-of-blank-lines": (["fit", *CORPUS, "--data.train_file=text/blank.txt"], "text/blank.txt has only"),
    "text-tokenizer-file-not-a-tokenizer": (
        ["fit", *PAIR, "--data.train_file=text/pairs.tsv", "--data.tokenizer.file=text/not_a_tokenizer.json"],
        "data.tokenizer.file=text/not_a_tokenizer.json: text/not_a_tokenizer.json is not a tokenizer.json (",
    ),
    "text-tokenizer-lacks-mask": (
        ["fit", *CORPUS, "--data.train_file=text/corpus.txt", "--data.tokenizer.file=text/no_mask.json"],
        "data.tokenizer.file=text/no_mask.json: the tokenizer has no mask token (<mask>/[MASK])",
    ),
    "text-tokenizer-lacks-bos-for-translation": (
        ["fit", *PAIR, "--data.train_file=text/pairs.tsv", "--data.tokenizer.file=text/no_mask.json"],
        "data.tokenizer.file=text/no_mask.json: the tokenizer has no bos token",
    ),
    "text-tokenizer-vocab-size-below-specials": (
        ["fit", *PAIR, "--data.train_file=text/pairs.tsv", "--data.tokenizer.vocab_size=5"],
        "data.tokenizer.vocab_size=5: must be more than the 7 special tokens",
    ),
    "text-val-file-and-fraction": (
        ["fit", *PAIR, "--data.train_file=text/pairs.tsv", "--data.val_file=text/pairs.tsv", "--data.val_fraction=0.1"],
        "data.val_fraction=0.1: give data.val_file or a fraction, not both",
    ),
}


def _checkpoint_cases() -> dict[str, tuple[list[str], str]]:
    cases = {}
    for kind, path in BROKEN.items():
        cases[f"fit-ckpt-{kind}"] = (["fit", *FIT, f"--ckpt_path={path}"], f"--ckpt_path {path}: ")
        cases[f"test-ckpt-{kind}"] = (["test", *EVAL, f"--ckpt_path={path}"], f"--ckpt_path {path}: ")
        cases[f"validate-ckpt-{kind}"] = (["validate", *EVAL, f"--ckpt_path={path}"], f"--ckpt_path {path}: ")
        cases[f"translate-ckpt-{kind}"] = (["translate", f"--ckpt_path={path}", "3 4"], f"--ckpt_path {path}: ")
        cases[f"pretrained-{kind}"] = (
            ["fit", *BERT_SENTIMENT, f"--model.pretrained={path}"],
            f"model.pretrained={path}: ",
        )
    return cases


CASES: dict[str, tuple[list[str], str]] = {
    # -- values torch or Lightning refuse, or accept silently -----------------------------------------------------
    "lr-negative": (["fit", *FIT, "--optimizer.init_args.lr=-1"], "optimizer.init_args.lr=-1.0: Invalid learning rate"),
    "weight-decay-negative": (["fit", *FIT, "--optimizer.init_args.weight_decay=-1"], "init_args.weight_decay=-1.0"),
    "betas-above-1": (["fit", *FIT, "--optimizer.init_args.betas=[1.5, 0.9]"], "optimizer.init_args.betas=(1.5, 0.9)"),
    "betas-below-0": (["fit", *FIT, "--optimizer.init_args.betas=[0.9, -0.1]"], "optimizer.init_args.betas"),
    "eps-negative": (["fit", *FIT, "--optimizer.init_args.eps=-1"], "optimizer.init_args.eps=-1.0"),
    "sgd-momentum-negative": (
        ["fit", *FIT, "--optimizer=SGD", "--optimizer.init_args.lr=0.1", "--optimizer.init_args.momentum=-1"],
        "optimizer.init_args.momentum=-1.0",
    ),
    "unknown-optimizer": (["fit", *FIT, "--optimizer=Adamm"], "optimizer"),
    "plateau-factor-above-1": (
        ["fit", *FIT, "--lr_scheduler=ReduceLROnPlateau", "--lr_scheduler.monitor=val/loss", "--lr_scheduler.factor=2"],
        "lr_scheduler.init_args.factor=2.0",
    ),
    "devices-0": (["fit", *FIT, "--trainer.devices=0"], "trainer.devices='0'"),
    "devices-minus-3": (["fit", *FIT, "--trainer.devices=-3"], "trainer.devices='-3'"),
    "devices-empty-list": (["fit", *FIT, "--trainer.devices=[]"], "trainer.devices=[]"),
    "unknown-accelerator": (["fit", *FIT, "--trainer.accelerator=tpux"], "trainer.accelerator='tpux'"),
    "unknown-strategy": (["fit", *FIT, "--trainer.strategy=nope"], "trainer.strategy='nope'"),
    "accumulate-grad-batches-0": (["fit", *FIT, "--trainer.accumulate_grad_batches=0"], "accumulate_grad_batches=0"),
    "accumulate-grad-batches-minus-2": (["fit", *FIT, "--trainer.accumulate_grad_batches=-2"], "accumulate_grad_b"),
    "limit-train-batches-minus-1": (["fit", *FIT, "--trainer.limit_train_batches=-1"], "limit_train_batches=-1"),
    "limit-val-batches-1.5": (["fit", *FIT, "--trainer.limit_val_batches=1.5"], "trainer.limit_val_batches=1.5"),
    "max-epochs-minus-2": (["fit", *FIT, "--trainer.max_epochs=-2"], "trainer.max_epochs=-2"),
    "max-epochs-not-a-number": (["fit", *FIT, "--trainer.max_epochs=two"], "max_epochs"),
    "max-steps-minus-5": (["fit", *FIT, "--trainer.max_steps=-5"], "trainer.max_steps=-5"),
    "num-workers-minus-1": (["fit", *FIT, "--data.num_workers=-1"], "data.num_workers=-1"),
    "bucket-window-minus-1": (["fit", *FIT, "--data.bucket_window=-1"], "data.bucket_window=-1: must be at least 0"),
    "threads-0": (["fit", *FIT, "--threads=0"], "threads=0: must be at least 1"),
    "rope-odd-head-width": (
        ["fit", *FIT, "--model.transformer.positions=rope", "--model.transformer.n_heads=16"],
        "model.transformer.positions=rope: rotates pairs of dimensions",
    ),
    "transformer-positions-none": (
        ["fit", *FIT, "--model.transformer.positions=none"],
        "model.transformer.positions=none: the encoder attends both ways, so nothing there tells positions apart",
    ),
    "transformer-positions-unknown": (["fit", *FIT, "--model.transformer.positions=t6"], "positions"),
    "layer-norm-eps-0": (["fit", *BERT_SENTIMENT, "--model.bert.layer_norm_eps=0"], "model.bert.layer_norm_eps=0.0"),
    "pretrained-hf-no-folder": (
        ["fit", *BERT_SENTIMENT, "--model.pretrained=hf:nowhere"],
        "model.pretrained=hf:nowhere: no config.json in nowhere",
    ),
    "pretrained-hf-other-sizes": (
        ["fit", *BERT_SENTIMENT, "--model.pretrained=hf:hf_bert"],
        "model.pretrained=hf:hf_bert: its hidden_size is 8, model.bert.d_model is 16; set --model.bert.d_model=8",
    ),
    "gradient-clip-val-minus-1": (["fit", *FIT, "--trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    "gradient-clip-algorithm": (["fit", *FIT, "--trainer.gradient_clip_algorithm=max"], "gradient_clip_algorithm"),
    "log-every-n-steps-0": (["fit", *FIT, "--trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0"),
    "check-val-every-n-epoch-0": (["fit", *FIT, "--trainer.check_val_every_n_epoch=0"], "check_val_every_n_epoch=0"),
    "num-nodes-0": (["fit", *FIT, "--trainer.num_nodes=0"], "trainer.num_nodes=0"),
    "unknown-precision": (["fit", *FIT, "--trainer.precision=13"], "precision"),
    "seed-not-a-number": (["fit", *FIT, "--seed_everything=abc"], "seed_everything"),
    "val-check-interval-0": (["fit", *FIT, "--trainer.val_check_interval=0"], "trainer.val_check_interval=0"),
    "max-time-not-a-duration": (["fit", *FIT, "--trainer.max_time=soon"], "trainer.max_time='soon'"),
    "step-lr-step-size-0": (
        ["fit", *FIT, "--lr_scheduler=StepLR", "--lr_scheduler.step_size=0"],
        "lr_scheduler.init_args.step_size=0",
    ),
    "early-stopping-unknown-mode": (
        [
            "fit",
            *FIT,
            "--trainer.callbacks+=EarlyStopping",
            "--trainer.callbacks.monitor=val/loss",
            "--trainer.callbacks.mode=maxx",
        ],
        "trainer.callbacks EarlyStopping: `mode` can be min, max",
    ),
    # -- keys -------------------------------------------------------------------------------------------------------
    "prefix-max-epoch": (["fit", *FIT, "--trainer.max_epoch=2"], "--trainer.max_epoch"),
    "prefix-d-mod": (["fit", *FIT, "--model.transformer.d_mod=32"], "d_mod"),
    "unknown-trainer-key": (["fit", *FIT, "--trainer.max_epochz=2"], "max_epochz"),
    "unknown-model": (["fit", *FIT, "--model=Transformr"], "--model Transformr: unknown model; choose one of"),
    "unknown-data": (["fit", *TINY_MODEL, "--data=Revers"], "--data Revers: unknown data; choose one of"),
    "model-data-family": (["fit", *TINY_CLASSIFIERS["RNNClassifier"], "--data=Copy"], "--model RNNClassifier trains"),
    "unknown-subcommand": (["fitt", *FIT], "fitt"),
    # -- a misspelt key or word: named as typed, with the closest key or word ------------------------------------------
    "typo-key-of-seq2seq-attention": (
        ["fit", *TINY_MODELS["Seq2SeqAttention"], "--data=Copy", *TINY_DATA, *QUIET, "--model.rnn.hiden_size=64"],
        "--model.rnn.hiden_size: no such key of Seq2SeqAttention; did you mean --model.rnn.hidden_size?",
    ),
    "typo-key-of-another-model": (
        ["fit", *FIT, "--model.rnn.hiden_size=64"],
        "--model.rnn.hiden_size: no such key of Transformer; did you mean --model.rnn.hidden_size (a key of Seq2Seq, "
        "Seq2SeqAttention)?",
    ),
    "typo-model-key": (
        ["fit", *FIT, "--model.label_smoothin=0.1"],
        "--model.label_smoothin: no such key of Transformer; did you mean --model.label_smoothing?",
    ),
    "typo-model-init-args-key": (
        ["fit", *FIT, "--model.init_args.transformer.d_mdel=8"],
        "--model.init_args.transformer.d_mdel: no such key of Transformer; did you mean "
        "--model.init_args.transformer.d_model?",
    ),
    "typo-data-key": (["fit", *FIT, "--data.batch_sise=3"], "--data.batch_sise: no such key of Copy; did you mean"),
    # -- a class's key given before the class: where it belongs, not "did you mean" the same key -----------------------
    "model-key-before-model": (
        ["fit", "--model.label_smoothing=0.1", *FIT],
        "--model.label_smoothing: no such key of ArenaModel; it is a key of BertClassifier, DecoderOnly, "
        "DecoderOnlyClassifier, RNNClassifier, Seq2Seq, Seq2SeqAttention, Transformer (give --model=NAME before it)",
    ),
    "data-key-before-data": (["fit", "--data.batch_size=3", *FIT], "it is a key of Copy, LanguagePair, Pretraining,"),
    "typo-optimizer-key": (["fit", *FIT, "--optimizer.init_args.lrr=3"], "did you mean --optimizer.init_args.lr?"),
    "typo-trainer-key": (["fit", *FIT, "--trainer.max_epochz=2"], "did you mean --trainer.max_epochs?"),
    "typo-top-level-key": (["fit", *FIT, "--lr_scheduler_intervall=step"], "did you mean --lr_scheduler_interval?"),
    "typo-key-without-a-close-one": (
        ["fit", *FIT, "--model.zzz=1"],
        "--model.zzz: no such key of Transformer; `--model.help Transformer` lists its keys",
    ),
    "typo-key-in-config": (
        ["fit", "-c", "typo_key.yaml", "--data=Copy", *TINY_DATA, *QUIET],
        "--config typo_key.yaml: model.init_args.rnn.hiden_size: no such key of Seq2SeqAttention; did you mean "
        "model.init_args.rnn.hidden_size?",
    ),
    "typo-attention-kind": (
        ["fit", *TINY_MODELS["Seq2SeqAttention"], "--data=Copy", *TINY_DATA, *QUIET, "--model.attention.kind=bahdanu"],
        "--model.attention.kind=bahdanu: not one of 'bahdanau', 'dot', 'general'; did you mean 'bahdanau'?",
    ),
    "typo-rnn-cell-as-two-arguments": (
        ["fit", *TINY_MODELS["Seq2Seq"], "--data=Copy", *TINY_DATA, *QUIET, "--model.rnn.cell", "lstn"],
        "--model.rnn.cell=lstn: not one of 'gru', 'lstm'; did you mean 'lstm'?",
    ),
    "typo-decode": (
        ["fit", *FIT, "--model.decode=beem"],
        "--model.decode=beem: not one of 'greedy', 'beam'; did you mean 'beam'?",
    ),
    "typo-scheduler-interval": (
        ["fit", *FIT, "--lr_scheduler_interval", "steps"],
        "--lr_scheduler_interval=steps: not one of 'step', 'epoch'; did you mean 'step'?",
    ),
    # -- sizes the data decides, typed ------------------------------------------------------------------------------
    "typed-max-len": (["fit", *FIT, "--model.max_len=5"], "model.max_len=5: the data decides it"),
    "typed-vocab-size": (["fit", *FIT, "--model.vocab_size=3"], "model.vocab_size=3: the data decides it"),
    "typed-pad-id": (["fit", *FIT, "--model.pad_id=3"], "model.pad_id=3: the data decides it"),
    "typed-num-classes": (["fit", *RNN_SENTIMENT, "--model.num_classes=7"], "model.num_classes=7: the data decides"),
    # -- model and data settings ------------------------------------------------------------------------------------
    "heads-do-not-divide": (["fit", *FIT, "--model.transformer.n_heads=3"], "model.transformer.d_model=16 must be"),
    "d-model-0": (["fit", *FIT, "--model.transformer.d_model=0"], "model.transformer.d_model=0"),
    "dropout-1.5": (["fit", *FIT, "--model.transformer.dropout=1.5"], "model.transformer.dropout=1.5"),
    "rnn-hidden-size-0": (["fit", *TINY_MODELS["Seq2Seq"], "--data=Copy", "--model.rnn.hidden_size=0"], "size=0"),
    "unknown-attention-kind": (
        ["fit", *TINY_MODELS["Seq2SeqAttention"], "--data=Copy", "--model.attention.kind=luong"],
        "attention.kind",
    ),
    "decoder-only-nope-prefix": (
        ["fit", *TINY_MODELS["DecoderOnly"], "--data=Copy", "--model.decoder.positions=none"],
        "model.decoder.positions=none with model.decoder.attention=prefix",
    ),
    "decoder-only-unknown-attention": (
        ["fit", *TINY_MODELS["DecoderOnly"], "--data=Copy", "--model.decoder.attention=both"],
        "model.decoder.attention",
    ),
    "model-beam-size-0": (["fit", *FIT, "--model.beam_size=0"], "model.beam_size=0"),
    "model-length-penalty-negative": (["fit", *FIT, "--model.length_penalty=-1"], "model.length_penalty=-1"),
    "label-smoothing-1": (["fit", *FIT, "--model.label_smoothing=1"], "model.label_smoothing=1"),
    "unknown-decode": (["fit", *FIT, "--model.decode=top_k"], "decode"),
    "scheduler-interval-misspelt": (["fit", *FIT, "--lr_scheduler_interval=steps"], "lr_scheduler_interval"),
    "batch-size-0": (["fit", *FIT, "--data.batch_size=0"], "data.batch_size=0"),
    "train-lengths-reversed": (["fit", *FIT, "--data.train_lengths=[10, 3]"], "data.train_lengths=[10, 3]"),
    "test-lengths-below-1": (["fit", *FIT, "--data.test_lengths=[0, 5]"], "data.test_lengths=[0, 5]"),
    "too-few-distinct-inputs": (["fit", *FIT, "--data.vocab_size=2", "--data.train_lengths=[3, 4]"], "too few"),
    "class-weights-count": (["fit", *RNN_SENTIMENT, "--data.class_weights=[1, 1]"], "data.class_weights=[1.0, 1.0]"),
    "mask-rate-0": (
        ["fit", "--model=BertPretraining", "--data=Pretraining", *TINY_SPLITS, "--data.mask_rate=0"],
        "data.mask_rate=0",
    ),
    # -- data that would not fit in memory, refused before it is generated (it used to hang) -------------------------
    "train-lengths-100000": (["fit", *COPY_DEFAULT_SIZES, "--data.train_lengths=[3, 100000]"], "data.train_lengths"),
    "test-lengths-200000": (["fit", *COPY_DEFAULT_SIZES, "--data.test_lengths=[3, 200000]"], "data.test_lengths"),
    "train-size-1e9": (["fit", *TINY_MODEL, "--data=Copy", "--data.train_size=1000000000"], "data.train_size"),
    "language-pair-lengths": (
        ["fit", *TINY_MODEL, "--data=LanguagePair", "--data.train_lengths=[3, 100000]"],
        "data.train_lengths",
    ),
    # -- monitors of metrics the model never logs, refused at fit start ----------------------------------------------
    "early-stopping-unknown-metric": (
        ["fit", *FIT, "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val/nothing"],
        "EarlyStopping(monitor='val/nothing'): Transformer never logs",
    ),
    "model-checkpoint-unknown-metric": (
        ["fit", *FIT, "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.monitor=val/acc"],
        "ModelCheckpoint(monitor='val/acc')",
    ),
    "plateau-unknown-metric": (
        ["fit", *FIT, "--lr_scheduler=ReduceLROnPlateau", "--lr_scheduler.monitor=val/exact_macth"],
        "lr_scheduler.init_args.monitor='val/exact_macth'",
    ),
    "classifier-monitor-of-translation": (
        [
            "fit",
            *RNN_SENTIMENT,
            "--trainer.callbacks+=EarlyStopping",
            "--trainer.callbacks.monitor=val/exact_match",
        ],
        "RNNClassifier never logs 'val/exact_match'",
    ),
    # -- callbacks that check the run when it is set up ---------------------------------------------------------------
    "warmup-longer-than-run": (
        ["fit", *FIT, "--trainer.callbacks+=Warmup", "--trainer.callbacks.steps=500"],
        "Warmup: 500 warmup steps",
    ),
    "warmup-start-factor-0": (
        [
            "fit",
            *FIT,
            "--trainer.callbacks+=Warmup",
            "--trainer.callbacks.steps=5",
            "--trainer.callbacks.start_factor=0",
        ],
        "Warmup: start_factor=0.0",
    ),
    "linear-scaling-reference-0": (
        ["fit", *FIT, "--trainer.callbacks+=LinearScaling", "--trainer.callbacks.reference_batch_size=0"],
        "reference_batch_size=0",
    ),
    # -- config files -------------------------------------------------------------------------------------------------
    "config-empty": (["fit", "-c", "empty.yaml", *FIT], "--config empty.yaml: must be a mapping"),
    "config-comment-only": (["fit", "-c", "comment.yaml", *FIT], "--config comment.yaml: must be a mapping"),
    "config-list": (["fit", "-c", "list.yaml", *FIT], "--config list.yaml: must be a mapping"),
    "config-scalar": (["fit", "-c", "scalar.yaml", *FIT], "--config scalar.yaml: must be a mapping"),
    "config-duplicate-key": (["fit", "-c", "duplicate.yaml", *FIT], "--config duplicate.yaml: duplicate key 'max_epo"),
    "config-duplicate-top-key": (["fit", "-c", "duplicate_top.yaml", *FIT], "duplicate_top.yaml: duplicate key 'mo"),
    "config-invalid-yaml": (["fit", "-c", "invalid.yaml", *FIT], "--config invalid.yaml: not valid YAML"),
    "config-missing": (["fit", "-c", "nowhere.yaml", *FIT], "--config nowhere.yaml: no such file"),
    "config-folder": (["fit", "-c", "folder.ckpt", *FIT], "--config folder.ckpt"),
    "config-unknown-key": (["fit", "-c", "unknown_key.yaml", *FIT], "trainerx"),
    "config-bad-value": (["fit", "-c", "bad_value.yaml", *TINY_MODEL, "--data=Copy"], "trainer.max_epochs=-2"),
    "config-prefix-key": (["fit", "-c", "prefix_key.yaml", *FIT], "max_epoch"),
    # -- checkpoints ----------------------------------------------------------------------------------------------
    **_checkpoint_cases(),
    "fit-ckpt-other-vocabulary": (
        ["fit", *FIT, "--data.vocab_size=20", "--trainer.max_epochs=2", f"--ckpt_path={CKPT}"],
        f"--ckpt_path {CKPT}: trained on another vocabulary",
    ),
    "fit-ckpt-other-model": (
        ["fit", *TINY_MODELS["Seq2Seq"], "--data=Copy", *TINY_DATA, *QUIET, f"--ckpt_path={CKPT}"],
        "holds a Transformer, not a Seq2Seq",
    ),
    "fit-ckpt-other-optimizer": (
        [
            "fit",
            *FIT,
            "--trainer.max_epochs=2",
            f"--ckpt_path={CKPT}",
            "--optimizer=SGD",
            "--optimizer.init_args.lr=0.1",
        ],
        "its optimizer state is not --optimizer SGD's",
    ),
    "fit-ckpt-foreign": (["fit", *FIT, "--ckpt_path=foreign.ckpt"], "--ckpt_path foreign.ckpt: not written by"),
    "test-ckpt-other-d-model": (
        ["test", *EVAL, "--model.transformer.d_model=32", f"--ckpt_path={CKPT}"],
        "model.transformer.d_model=32: the checkpoint",
    ),
    "test-ckpt-other-layers": (
        ["test", *EVAL, "--model.transformer.num_decoder_layers=3", f"--ckpt_path={CKPT}"],
        "model.transformer.num_decoder_layers=3: the checkpoint",
    ),
    "test-ckpt-other-vocabulary": (
        ["test", *EVAL, "--data.vocab_size=12", f"--ckpt_path={CKPT}"],
        "trained on another vocabulary",
    ),
    "test-without-ckpt": (["test", *EVAL], "nlparena test: give --ckpt_path"),
    "validate-without-ckpt": (["validate", *EVAL], "nlparena validate: give --ckpt_path"),
    "predict-without-ckpt": (["predict", *EVAL], "nlparena predict: give --ckpt_path"),
    "pretrained-translation-checkpoint": (
        ["fit", *BERT_SENTIMENT, f"--model.pretrained={CKPT}"],
        f"model.pretrained={CKPT}: no BERT encoder weights",
    ),
    # -- the file system --------------------------------------------------------------------------------------------
    "save-dir-is-a-file": (["fit", *FIT, "--trainer.logger.init_args.save_dir=a_file"], "save_dir=a_file: "),
    "save-dir-under-a-file": (["fit", *FIT, "--trainer.logger.init_args.save_dir=a_file/logs"], "save_dir=a_file/"),
    "save-dir-read-only": (["fit", *FIT, f"--trainer.logger.init_args.save_dir={READ_ONLY}"], f"save_dir={READ_ONLY}"),
    "test-save-dir-is-a-file": (
        ["test", *EVAL, f"--ckpt_path={CKPT}", "--trainer.logger.init_args.save_dir=a_file"],
        "save_dir=a_file: ",
    ),
    # -- translate ------------------------------------------------------------------------------------------------
    "translate-special-eos": (["translate", f"--ckpt_path={CKPT}", "3 <eos> 4"], "token '<eos>' in '3 <eos> 4' is a"),
    "translate-special-pad": (["translate", f"--ckpt_path={CKPT}", "<pad> 3"], "token '<pad>'"),
    "translate-too-long": (["translate", f"--ckpt_path={CKPT}", "1 " * 500], "has 500 tokens; this model takes at"),
    "translate-out-of-vocabulary": (["translate", f"--ckpt_path={CKPT}", "3 9 x 1"], "token 'x' in '3 9 x 1' is not"),
    "translate-empty-input": (["translate", f"--ckpt_path={CKPT}", "  "], "empty input"),
    "translate-length-penalty-negative": (
        ["translate", f"--ckpt_path={CKPT}", "--length_penalty=-1", "3 4"],
        "--length_penalty -1.0: must be at least 0",
    ),
    "translate-beam-size-0": (["translate", f"--ckpt_path={CKPT}", "--beam_size=0", "3 4"], "--beam_size 0: must be"),
    "translate-beam-size-not-a-number": (["translate", f"--ckpt_path={CKPT}", "--beam_size=x", "3 4"], "--beam_size"),
    "translate-unknown-decode": (["translate", f"--ckpt_path={CKPT}", "--decode=top_k", "3 4"], "--decode"),
    "translate-prefix-option": (["translate", f"--ckpt_path={CKPT}", "--beam_siz=3", "3 4"], "--beam_siz"),
    "translate-without-ckpt": (["translate", "3 4"], "--ckpt_path"),
    "translate-without-inputs": (["translate", f"--ckpt_path={CKPT}"], "inputs"),
    "translate-greedy-with-beam-size": (
        ["translate", f"--ckpt_path={CKPT}", "--decode=greedy", "--beam_size=3", "3 4"],
        "--beam_size 3: a setting of beam search, not of --decode greedy",
    ),
    "translate-file-missing": (
        ["translate", f"--ckpt_path={CKPT}", "--file=nowhere.txt"],
        "--file nowhere.txt: no such",
    ),
    "translate-file-folder": (["translate", f"--ckpt_path={CKPT}", "--file=compare"], "--file compare: is a folder"),
    "translate-file-and-inputs": (["translate", f"--ckpt_path={CKPT}", "--file=a_file", "3 4"], "not both"),
    "translate-file-out-of-vocabulary": (
        ["translate", f"--ckpt_path={CKPT}", "--file=a_file"],
        "--file a_file line 1: token 'not' in 'not a folder' is not in the vocabulary",
    ),
    "translate-batch-size-0": (["translate", f"--ckpt_path={CKPT}", "--batch_size=0", "3 4"], "--batch_size 0: must"),
    "translate-foreign-checkpoint": (["translate", "--ckpt_path=foreign.ckpt", "3 4"], "--ckpt_path foreign.ckpt: "),
    # -- compare ----------------------------------------------------------------------------------------------------
    **{
        f"compare-{name.replace('_', '-')}": (["compare", "-c", f"compare/{name}.yaml"], f"compare/{name}.yaml: ")
        for name in [*COMPARE, "duplicate_key", "empty", "list", "invalid"]
    },
    # the check `nlparena fit` makes when it starts, made once before the first trial (not inside every trial)
    "compare-monitor-never-logged": (
        ["compare", "-c", "compare/monitor_never_logged.yaml"],
        "compare/monitor_never_logged.yaml: runs[0] (a): trainer.callbacks EarlyStopping(monitor='val/nothing'): ",
    ),
    "compare-missing-config": (["compare", "-c", "compare/nowhere.yaml"], "--config compare/nowhere.yaml: no such"),
    "compare-without-config": (["compare"], "-c/--config"),
    "compare-force-and-report-only": (
        ["compare", "-c", "compare/unknown_key.yaml", "--force", "--report-only"],
        "--force and --report-only",
    ),
    "compare-jobs-0": (["compare", "-c", "compare/unknown_key.yaml", "--jobs=0"], "--jobs 0: must be at least 1"),
    "compare-seeds-repeated": (["compare", "-c", "compare/unknown_key.yaml", "--seeds", "1", "1"], "--seeds=[1, 1]"),
    "compare-unknown-executor": (["compare", "-c", "compare/unknown_key.yaml", "--executor=ray"], "--executor"),
    "compare-slurm-without-sbatch": (
        ["compare", "-c", "compare/unknown_key.yaml", "--executor=slurm"],
        "--executor slurm: no `sbatch` on this machine",
    ),
    "compare-prefix-option": (["compare", "-c", "compare/unknown_key.yaml", "--forc"], "--forc"),
    **{
        f"compare-search-{name.replace('_', '-')}": (
            ["compare", "-c", f"compare/search_{name}.yaml"],
            f"compare/search_{name}.yaml: {'runs[0] (tiny lrr=0.1): ' if name == 'unknown_key' else ''}{expected}",
        )
        for name, (_, expected) in SEARCHES.items()
    },
    "compare-storage-cannot-open": (
        ["compare", "-c", "compare/search_ok.yaml", "--storage", "postgresql+psycopg2://arena:s3cret@127.0.0.1:1/db"],
        "--storage postgresql+psycopg2://arena:***@127.0.0.1:1/db: Optuna cannot open it (",
    ),
    "compare-storage-not-a-url": (
        ["compare", "-c", "compare/search_ok.yaml", "--storage", "studies.db"],
        "--storage studies.db: Optuna cannot open it (",
    ),
    "compare-storage-without-search": (
        ["compare", "-c", "compare/no_search.yaml", "--storage", "sqlite:///x.db"],
        "--storage: this comparison has no search: to store",
    ),
    "compare-stop-at-target-needs-target": (
        ["compare", "-c", "compare/stop_at_target_without_target.yaml"],
        "compare/stop_at_target_without_target.yaml: stop_at_target: true needs target: (the headline metric's value",
    ),
    # -- schedule ---------------------------------------------------------------------------------------------------
    "fit-long-config-option-without-model": (
        ["fit", "--config", "schedule_only.yaml"],
        "the following arguments are required: fit.data, fit.model",
    ),
    "schedule-without-data-and-model": (
        ["schedule", "-c", "schedule_only.yaml"],
        "nlparena schedule: give --data and --model (or data: and model: in a -c config), as for `nlparena fit`: the "
        "steps per epoch come from the data's size and batch size, and the optimizer and its scheduler are built on "
        "the model's parameters",
    ),
    "schedule-without-model": (
        ["schedule", "-c", "schedule_only.yaml", "--data=Copy"],
        "nlparena schedule: give --model (or model: in a -c config), as for `nlparena fit`: the optimizer and its "
        "scheduler are built on the model's parameters",
    ),
    "schedule-without-data": (
        ["schedule", "-c", "schedule_only.yaml", "--model", "Transformer"],
        "nlparena schedule: give --data (or data: in a -c config), as for `nlparena fit`: the steps per epoch come "
        "from the data's size and batch size",
    ),
    "schedule-steps-0": (["schedule", *FIT, "--steps=0"], "--steps 0: must be at least 1"),
    "schedule-out-not-png": (["schedule", *FIT, "--out=lr.jpg"], "--out lr.jpg: must be a .png file"),
    "schedule-prefix-option": (["schedule", *FIT, "--step=3"], "--step"),
    "schedule-plateau": (
        ["schedule", *FIT, "--lr_scheduler=ReduceLROnPlateau", "--lr_scheduler.monitor=val/loss"],
        "lr_scheduler ReduceLROnPlateau",
    ),
    "schedule-warmup-longer-than-run": (
        ["schedule", *FIT, "--trainer.callbacks+=Warmup", "--trainer.callbacks.steps=99"],
        "Warmup: 99 warmup steps",
    ),
    "schedule-devices-0": (["schedule", *FIT, "--trainer.devices=0"], "trainer.devices='0'"),
    "schedule-devices-uncountable": (["schedule", *FIT, "--trainer.devices=many"], "trainer.devices"),
    "schedule-accumulate-0": (["schedule", *FIT, "--trainer.accumulate_grad_batches=0"], "accumulate_grad_batches=0"),
    "schedule-lr-negative": (["schedule", *FIT, "--optimizer.init_args.lr=-1"], "optimizer.init_args.lr=-1.0"),
    "schedule-missing-config": (["schedule", "-c", "nowhere.yaml", *FIT], "--config nowhere.yaml: no such file"),
    "schedule-config-duplicate-key": (["schedule", "-c", "duplicate.yaml", *FIT], "duplicate key 'max_epochs'"),
    # -- export ------------------------------------------------------------------------------------------------------
    "export-out-not-empty": (["export", "--data=Copy", "--out=compare"], "--out compare: is not empty"),
    "export-out-is-a-file": (["export", "--data=Copy", "--out=a_file"], "--out a_file: is a file, not a folder"),
    "export-out-under-a-file": (["export", "--data=Copy", "--out=a_file/data"], "--out a_file/data: "),
    "export-without-out": (["export", "--data=Copy"], "out"),
    "export-unknown-data": (["export", "--data=Revers", "--out=data"], "--data Revers: unknown data; choose one of"),
    "export-bad-data-value": (["export", "--data=Copy", "--data.train_size=0", "--out=data"], "data.train_size=0"),
    "export-text-data": (
        ["export", "--data=TextPair", "--data.train_file=nowhere.tsv", "--out=data"],
        "--data TextPair: reads text files already",
    ),
    # the key named is one of the data: section export reads, not one of the fit config's others
    "export-config-data-not-a-class": (
        ["export", "-c", "export_data_5.yaml", "--out=data"],
        '--config export_data_5.yaml: Parser key "data"',
    ),
    "export-missing-config": (["export", "-c", "nowhere.yaml", "--out=data"], "--config nowhere.yaml: no such file"),
    **HOSTILE_CASES,
    **TEXT_CASES,
}


def tree(folder: str) -> dict[str, int | None]:
    """Every path under `folder`, with its modification time if it is a file (a folder's changes when a run folder
    is made in it and removed)."""
    paths = Path(folder).rglob("*") if Path(folder).exists() else []
    return {str(path): path.stat().st_mtime_ns if path.is_file() else None for path in paths}


@pytest.mark.parametrize(("args", "expected"), CASES.values(), ids=CASES.keys())
def test_a_bad_input_is_one_line_before_anything_runs(made_once, capsys, args, expected):
    shutil.copytree(made_once, Path.cwd(), dirs_exist_ok=True)
    before = tree("logs")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("nlparena: error: ") and len(line) <= 300, line
    assert expected in line, line
    assert "Traceback" not in err
    assert tree("logs") == before  # no new run folder; the earlier run's logs untouched
    assert not Path("logs/compare").exists()


# -- hostile input and broken files (issue 22), cases that need a setup of their own -----------------------------------
def one_line_error(capsys, args: list[str], expected: str, status: int) -> str:
    """Run `nlparena ARGS`; assert it ended with exit status `status` and one line holding `expected`; the line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*args)
    err = capsys.readouterr().err
    assert exit_info.value.code == status, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    line = err.splitlines()[0]
    assert line.startswith("nlparena: error: ") and len(line) <= 300 and expected in line, line
    return line


# -- a file given where a class name is expected: named, never echoed (issue 24) ---------------------------------------
FILE_AS_CLASS = {
    "data-tsv": (
        ["fit", *TINY_MODEL, "--data=text/pairs.tsv", *QUIET],
        "--data text/pairs.tsv: a file, where the name of a data module class is expected; to train on it, give "
        "--data TextPair --data.train_file text/pairs.tsv",
    ),
    "data-tsv-as-two-arguments": (["fit", *TINY_MODEL, "--data", "text/pairs.tsv", *QUIET], "--data TextPair --data."),
    "data-missing-file": (
        ["fit", *TINY_MODEL, "--data=text/nowhere.tsv", *QUIET],
        "--data text/nowhere.tsv: no such file, and not the name of a data module class; choose one of ",
    ),
    "model-config-file": (
        ["fit", "--model=unknown_key.yaml", "--data=Copy", *QUIET],
        "--model unknown_key.yaml: a file, where the name of a model class is expected; choose one of ",
    ),
    "data-in-config": (["fit", "-c", "data_is_a_file.yaml", *TINY_MODEL], "data_is_a_file.yaml: data: text/pairs.tsv"),
}


@pytest.mark.parametrize(("args", "expected"), FILE_AS_CLASS.values(), ids=FILE_AS_CLASS.keys())
def test_a_file_given_as_a_class_name_is_one_line_naming_it_without_its_content(made_once, capsys, args, expected):
    shutil.copytree(made_once, Path.cwd(), dirs_exist_ok=True)
    before = tree("logs")
    line = one_line_error(capsys, args, expected, 2)
    for content in ("a b c0", "x y0", "trainerx", "max_epochs"):  # the files' content is not echoed
        assert content not in line, line
    assert tree("logs") == before


# -- a beam setting without --decode beam switches to beam search, and says so (issue 24) ------------------------------
@pytest.mark.parametrize("option", ["--beam_size=3", "--length_penalty=0.6"])
def test_a_beam_setting_without_decode_beam_switches_to_beam_search_and_says_so(made_once, capsys, option):
    shutil.copytree(made_once, Path.cwd(), dirs_exist_ok=True)
    capsys.readouterr()
    run_cli("translate", f"--ckpt_path={CKPT}", option, "3 4")
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # the translation
    said = [line for line in err.splitlines() if line.startswith("nlparena: ")]
    given = option.replace("=", " ")
    assert said == [f"nlparena: {given} asks for beam search: decoding with --decode beam, not greedy"], err
    capsys.readouterr()
    run_cli("translate", f"--ckpt_path={CKPT}", "--decode=beam", option, "3 4")  # asked for: nothing to say
    assert "nlparena: " not in capsys.readouterr().err


# -- what `--model.help` lists: the keys a user sets, each described (issue 24) ---------------------------------------
DATA_DECIDED = ("vocab_size", "max_len", "pad_id", "num_classes")  # linked from the data by the CLI, never typed
MODELS = ["Transformer", "Seq2Seq", "Seq2SeqAttention", "BertClassifier", "RNNClassifier", "BertPretraining"]


def listed_keys(capsys, model: str) -> dict[str, str]:
    """`nlparena fit --model.help MODEL` as {key under model.: its description, on one line, without its type}."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", f"--model.help={model}")
    assert exit_info.value.code == 0
    entries: dict[str, str] = {}
    key = None
    for line in capsys.readouterr().out.splitlines():
        start = re.match(r"  --model\.([\w.]+)( \S+)?( {2,}.*)?$", line)  # `  --model.rnn.cell {gru,lstm}  text`
        if start:
            key = start.group(1)
            entries[key] = (start.group(3) or "").strip()
        elif key is not None and line.startswith("    "):
            entries[key] += " " + line.strip()
        else:
            key = None
    return {name: re.sub(r"\s*\((required, )?type: .*$", "", text).strip() for name, text in entries.items()}


@pytest.mark.parametrize("model", MODELS)
def test_model_help_lists_only_the_keys_a_user_sets_each_with_its_description(capsys, model):
    listed = listed_keys(capsys, model)
    assert len(listed) >= 5, listed
    decided = [key for key in listed if key in DATA_DECIDED]
    assert not decided, f"--model.help {model} lists sizes the data decides: {decided}"
    undescribed = [key for key, text in listed.items() if not text]
    assert not undescribed, f"--model.help {model} lists keys without a description: {undescribed}"


def test_a_save_dir_that_is_a_dangling_link_is_one_line(made_once, capsys):
    shutil.copytree(made_once, Path.cwd(), dirs_exist_ok=True)
    Path("dangling").symlink_to("nowhere")
    before = tree("logs")
    args = ["fit", *FIT, "--trainer.logger.init_args.save_dir=dangling"]
    one_line_error(capsys, args, "trainer.logger.init_args.save_dir=dangling: ", 2)
    assert tree("logs") == before and not Path("nowhere").exists()


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """(folder, fill): a 1 MiB file system (tmpfs, unmounted at the end) and `fill(leave)`, which fills it up to
    `leave` free bytes. Where mounting is not allowed, a plain folder and a `fill` that makes the TensorBoard writes
    (leave 0) or the checkpoint writes (after half their bytes) fail with ENOSPC."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(folder)], capture_output=True)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fill(leave: int) -> None:
        if mounted.returncode == 0:
            (folder / "filler").write_bytes(bytes(max(0, shutil.disk_usage(folder).free - leave)))
        elif leave == 0:
            from tensorboard.compat.tensorflow_stub.io import gfile

            monkeypatch.setattr(gfile.LocalFileSystem, "append", full)
        else:
            real_save = torch.save

            def save_half(obj, file, *args, **kwargs):  # half the checkpoint's bytes, then the disk is full
                real_save(obj, file, *args, **kwargs)
                file.truncate(file.tell() // 2)
                full()

            monkeypatch.setattr(torch, "save", save_half)

    yield folder, fill
    if mounted.returncode == 0:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize(
    ("leave", "written"),
    [(0, ""), (10**9, ".ckpt")],  # nothing fits; the logs fit but not the checkpoint (several MB)
    ids=["logs", "checkpoint"],
)
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_checkpoint_cut_short(small_disk, capsys, leave, written):
    folder, fill = small_disk
    fill(leave)
    big = ["--model.transformer.d_model=128", "--model.transformer.d_ff=512"]  # a checkpoint larger than the disk
    args = ["fit", *FIT, *big, "--trainer.limit_train_batches=2", f"--trainer.logger.init_args.save_dir={folder}"]
    line = one_line_error(capsys, args, "the disk is full", 1)
    assert f"cannot write {folder}/" in line and line.split(": the disk")[0].endswith(written), line
    for checkpoint in folder.rglob("*.ckpt"):  # none cut short: each one that is there loads
        torch.load(checkpoint, weights_only=True)
    assert not list(folder.rglob("*.tmp"))
