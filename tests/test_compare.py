"""`nlparena compare`: each run in its own process, finished runs skipped, a crash contained, the report built from
the runs' event files, bad compare configs refused before anything runs."""

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from matplotlib.image import imread

from nlparena.cli import NlpArenaCLI
from nlparena.compare.config import load_comparison
from nlparena.compare.runner import check_runs
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS, run_cli, scalars
from tests.models.test_classification import TINY_CLASSIFIERS, TINY_SPLITS

ROOT = Path(__file__).parents[1]
SHARED = ["--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=2", "--seed_everything=0"]
# An lr so high that the first step's loss is NaN: every setting passes the checks made before the first trial
# (a misspelt monitor no longer does: it is refused up front), and the run stops inside training, exit 1.
CRASHES_IN_TRAINING = ["--optimizer.init_args.lr=1e30"]
TINY_RUNS = [
    {"name": "transformer", "args": TINY_MODEL},
    {"name": "broken", "args": [*TINY_MODELS["Seq2Seq"], *CRASHES_IN_TRAINING]},
    {"name": "seq2seq", "args": TINY_MODELS["Seq2Seq"]},
]
TINY_COMPARE = {"name": "tiny", "shared": {"args": SHARED}, "target": 0.0, "runs": TINY_RUNS}
LOGS = Path("logs/compare/tiny")


def write_config(path: str, config: dict) -> str:
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def _one_thread_per_run(monkeypatch):
    """Tiny runs are fastest on one thread, and a run on two threads crawls while another process holds a core."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def tiny_compare(tmp_path_factory) -> tuple[Path, str]:
    """A folder where `nlparena compare -c tiny.yaml` ran once (transformer, broken, seq2seq), and what it printed."""
    folder = tmp_path_factory.mktemp("compare")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        patch.chdir(folder)
        patch.setenv("OMP_NUM_THREADS", "1")
        with pytest.raises(SystemExit) as exit_info:  # the broken run failed: the report is written, exit 1
            run_cli("compare", "-c", write_config("tiny.yaml", TINY_COMPARE))
    assert exit_info.value.code == 1
    return folder, out.getvalue()


def copy_of(folder: Path) -> None:
    """Work on a copy of a finished comparison in this test's own folder."""
    shutil.copytree(folder, Path.cwd(), dirs_exist_ok=True)


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as file:
        return {row["run"]: row for row in csv.DictReader(file)}


def versions(run: str) -> list[str]:
    return sorted(p.name for p in (LOGS / run).glob("version_*"))


def test_compare_writes_report_csv_and_figures_matching_the_event_files(tiny_compare, monkeypatch):
    folder, _ = tiny_compare
    monkeypatch.chdir(folder)
    rows = read_csv(LOGS / "results.csv")
    assert list(rows) == ["transformer", "broken", "seq2seq"]
    for run in ("transformer", "seq2seq"):
        row, logged = rows[run], scalars(LOGS / run / "version_0")
        assert row["status"] == "finished"
        assert row["log_dir"] == str(LOGS / run / "version_0")
        for column in ("fit_seconds", "samples_per_second", "tokens_per_second"):
            assert float(row[column]) == logged[f"compare/{column}"][-1][1] > 0
        assert int(row["parameters"]) == logged["compare/parameters"][-1][1]
        val = logged["val/exact_match"]
        assert len(val) == 2  # one per epoch: no extra point from the hyperparameters
        assert float(row["best_val_exact_match"]) == max(value for _, value in val)
        assert int(row["steps_to_target"]) == val[0][0]  # target 0.0: reached at the first validation
        for metric in ("exact_match", "token_accuracy", "bleu", "loss"):
            assert float(row[f"test_{metric}"]) == logged[f"test/{metric}"][-1][1]
        by_length = [tag for tag in logged if tag.startswith("test/bleu_by_length/")]
        assert by_length  # every source-length bucket's value is a column of its own
        for tag in by_length:
            assert float(row[tag.replace("/", "_")]) == logged[tag][-1][1]
        # every Copy source has at least 3 tokens
        assert float(row["tokens_per_second"]) >= 3 * float(row["samples_per_second"])
        marker = json.loads((LOGS / run / "version_0/compare.json").read_text())
        assert float(row["fit_seconds"]) == pytest.approx(marker["fit_seconds"], rel=1e-6)  # logged as float32
    model = NlpArenaCLI(args=[*SHARED, *TINY_MODEL], run=False).model
    assert int(rows["transformer"]["parameters"]) == sum(p.numel() for p in model.parameters())
    assert rows["transformer"]["model"] == "Transformer" and rows["seq2seq"]["model"] == "Seq2Seq"

    report = (LOGS / "report.md").read_text()
    for run in ("transformer", "seq2seq"):
        assert f"| {run} | 0 | finished | " in report  # the trial table: run, seed, status
    by_length = report.split("## Test BLEU by source length")[1].split("\n## ")[0]
    buckets = sorted(
        tag.removeprefix("test/bleu_by_length/")
        for tag in scalars(LOGS / "seq2seq/version_0")
        if tag.startswith("test/bleu_by_length/")
    )
    assert f"| run | {' | '.join(buckets)} |" in by_length
    assert "| `transformer` | " in by_length and "| `seq2seq` | " in by_length
    linked = re.findall(r"!\[[^]]*\]\((figures/[^)]+\.png)\)", report)
    assert linked == ["figures/val_exact_match.png", "figures/test_by_length.png"]
    for figure in linked:
        assert imread(LOGS / figure).shape[1] > 400


def test_a_crashing_run_is_reported_failed_while_the_others_complete(tiny_compare, monkeypatch):
    folder, printed = tiny_compare
    monkeypatch.chdir(folder)
    lines = printed.splitlines()
    assert "[2/3] broken: running (logs/compare/tiny/broken/version_0)" in lines
    failed = next(line for line in lines if line.startswith("[2/3] broken: failed"))
    assert failed.startswith("[2/3] broken: failed (exit 1): ") and "train loss is nan" in failed
    assert any(re.fullmatch(r"\[3/3\] seq2seq: finished in \d+ s, best val/exact_match \d\.\d{3}", x) for x in lines)
    assert lines[-1] == "report: logs/compare/tiny/report.md (1 failed: broken)"

    marker = json.loads((LOGS / "broken/version_0/compare.json").read_text())
    assert marker["status"] == "failed" and marker["exit_code"] == 1
    assert "train loss is nan" in marker["error"] and "Traceback (most recent call last):" not in marker["error"]
    assert json.loads((LOGS / "seq2seq/version_0/compare.json").read_text())["status"] == "finished"
    row = read_csv(LOGS / "results.csv")["broken"]
    assert row["status"] == "failed" and row["test_exact_match"] == "" and row["fit_seconds"] == ""
    report = (LOGS / "report.md").read_text()
    assert "| broken | 0 | failed | Seq2Seq | " in report
    failures = report.split("## Failed runs")[1].split("##")[0]
    assert "`broken` (logs/compare/tiny/broken/version_0), exit 1: " in failures and "train loss is nan" in failures


def test_running_compare_again_skips_finished_runs(tiny_compare, capsys):
    copy_of(tiny_compare[0])
    before = {str(p): p.stat().st_mtime_ns for p in LOGS.glob("*/version_0/**/*") if p.is_file()}
    with pytest.raises(SystemExit) as exit_info:  # the broken run is run again, and fails again
        run_cli("compare", "-c", "tiny.yaml")
    assert exit_info.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    assert "[1/3] transformer: skipped (finished in version_0)" in lines
    assert "[3/3] seq2seq: skipped (finished in version_0)" in lines
    assert "[2/3] broken: running (logs/compare/tiny/broken/version_1)" in lines  # a failed run is tried again
    assert versions("transformer") == versions("seq2seq") == ["version_0"]
    assert versions("broken") == ["version_0", "version_1"]

    one_run = {**TINY_COMPARE, "runs": TINY_RUNS[:1]}  # the same run's settings, so it counts as finished
    run_cli("compare", "-c", write_config("one.yaml", one_run), "--force")
    assert "[1/1] transformer: running (logs/compare/tiny/transformer/version_1)" in capsys.readouterr().out
    assert json.loads((LOGS / "transformer/version_1/compare.json").read_text())["status"] == "finished"
    after = {str(p): p.stat().st_mtime_ns for p in LOGS.glob("*/version_0/**/*") if p.is_file()}
    assert after == before  # earlier logs are never touched


def test_a_run_whose_settings_changed_runs_again(tiny_compare, capsys):
    copy_of(tiny_compare[0])
    changed = {
        **TINY_COMPARE,
        "runs": [{"name": "seq2seq", "args": [*TINY_MODELS["Seq2Seq"], "--model.rnn.cell=lstm"]}],
    }
    run_cli("compare", "-c", write_config("changed.yaml", changed))
    assert "[1/1] seq2seq: running (logs/compare/tiny/seq2seq/version_1)" in capsys.readouterr().out
    assert read_csv(LOGS / "results.csv")["seq2seq"]["log_dir"] == str(LOGS / "seq2seq/version_1")


def test_report_only_rebuilds_the_report_from_existing_logs_without_running(tiny_compare, capsys):
    copy_of(tiny_compare[0])
    original = {name: (LOGS / name).read_text() for name in ("report.md", "results.csv")}
    for name in ("report.md", "results.csv"):
        (LOGS / name).unlink()
    shutil.rmtree(LOGS / "figures")
    attempts = sorted(LOGS.glob("*/version_*"))
    run_cli("compare", "-c", "tiny.yaml", "--report-only")
    assert capsys.readouterr().out == "report: logs/compare/tiny/report.md (1 failed: broken)\n"
    assert {name: (LOGS / name).read_text() for name in original} == original
    assert (LOGS / "figures/val_exact_match.png").is_file()
    assert sorted(LOGS.glob("*/version_*")) == attempts  # no new version folder: nothing ran


def test_report_only_without_logs_gives_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("compare", "-c", write_config("tiny.yaml", TINY_COMPARE), "--report-only")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nlparena: error: --report-only: no run of tiny.yaml has logs under logs/compare/tiny")


RUN_ENTRY = "bad.yaml: runs[0]: "  # an entry of runs is named by its index
BAD_CONFIGS = {
    "unknown-key": (
        {**TINY_COMPARE, "trainer": {"max_epochs": 1}},
        "bad.yaml: trainer.max_epochs: no such key; the keys are runs, name, shared.configs, shared.args, target, ",
    ),
    "unknown-run-key": (
        {**TINY_COMPARE, "runs": [{"name": "a", "arg": ["--model=Seq2Seq"]}]},
        f"{RUN_ENTRY}arg: no such key; did you mean args?",
    ),
    "duplicate-run-names": (
        {**TINY_COMPARE, "runs": [TINY_RUNS[0], {**TINY_RUNS[2], "name": "transformer"}]},
        "bad.yaml: runs[1].name='transformer': duplicate run name (also runs[0])",
    ),
    "missing-config-file": (
        {**TINY_COMPARE, "runs": [{**TINY_RUNS[0], "configs": ["configs/nowhere.yaml"]}]},
        (f'{RUN_ENTRY}Parser key "configs": Not of type Path_fr: File does not exist: \'/', "/configs/nowhere.yaml'"),
    ),
    "no-runs": ({**TINY_COMPARE, "runs": []}, "bad.yaml: runs=[]: must be a non-empty list of runs"),
    "unsafe-run-name": (
        {**TINY_COMPARE, "runs": [{**TINY_RUNS[0], "name": "../escape"}]},
        f'{RUN_ENTRY}Parser key "name": Not of type FolderName: ../escape does not match regular expression',
    ),
    "bad-setting-in-the-last-run": (
        {
            **TINY_COMPARE,
            "runs": [TINY_RUNS[0], {"name": "rnn", "args": ["--model=Seq2Seq", "--model.rnn.hidden_size=0"]}],
        },
        "bad.yaml: runs[1] (rnn): model.rnn.hidden_size=0: must be at least 1",
    ),
}


@pytest.mark.parametrize(("config", "expected"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_compare_config_gives_one_line_before_any_run(capsys, config, expected):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("compare", "-c", write_config("bad.yaml", config))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    parts = expected if isinstance(expected, tuple) else (expected,)  # around a path that depends on the folder
    assert err.startswith("nlparena: error: ") and all(part in err for part in parts), err
    assert not Path("logs").exists()


COMPARE_CONFIGS = sorted(p for p in ROOT.glob("configs/**/*.yaml") if "\nruns:" in p.read_text())


def test_compare_configs_are_found():
    assert {p.parent.name for p in COMPARE_CONFIGS} == {"compare", "experiments"}


@pytest.mark.parametrize("config", COMPARE_CONFIGS, ids=lambda p: p.name)
def test_shipped_compare_configs_parse_and_every_run_instantiates(config, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # their config paths are relative to the repository
    exports = [line.removeprefix("#   nlparena ") for line in config.read_text().splitlines()]
    exports = [line for line in exports if line.startswith("export ")]  # the files a round trip's runs read
    if exports:  # made as the config's header says, in a folder of their own beside the repository's configs
        monkeypatch.chdir(tmp_path)
        Path("configs").symlink_to(ROOT / "configs")
        for line in exports:
            run_cli(*shlex.split(line))
    comparison = load_comparison(config.relative_to(ROOT))
    assert comparison.name == config.stem and len(comparison.runs) >= 2
    models = {info["model"] for info in check_runs(comparison).values()}
    assert models in (
        {"Seq2Seq", "Seq2SeqAttention", "Transformer"},  # translation
        {"BertClassifier", "RNNClassifier"},  # classification
        {"Transformer"},  # positional encodings
        {"DecoderOnly"},  # positional encodings, decoder-only
        {"Transformer", "DecoderOnly"},  # decoder-only against encoder-decoder
        {"Seq2Seq", "Seq2SeqAttention"},  # attention against sentence length
        {"RNNClassifier"},  # large batches with SGD
        {"BertPretraining", "BertClassifier"},  # pre-training against scratch along the labels
    )


def test_classification_compare_draws_the_confusion_matrices_side_by_side(capsys):
    shared = ["--data=Sentiment", *TINY_SPLITS, *QUIET, "--trainer.max_epochs=1"]
    runs = [{"name": name.lower(), "args": args} for name, args in TINY_CLASSIFIERS.items()]
    run_cli("compare", "-c", write_config("sentiment.yaml", {"shared": {"args": shared}, "runs": runs}))
    logs = Path("logs/compare/sentiment")
    rows = read_csv(logs / "results.csv")
    for run in ("bertclassifier", "rnnclassifier"):
        logged = scalars(logs / run / "version_0")
        assert float(rows[run]["best_val_macro_f1"]) == max(value for _, value in logged["val/macro_f1"])
        assert float(rows[run]["test_macro_f1"]) == logged["test/macro_f1"][-1][1]
        assert float(rows[run]["test_accuracy"]) == logged["test/accuracy"][-1][1]
    report = (logs / "report.md").read_text()
    assert "![test_confusion_matrices](figures/test_confusion_matrices.png)" in report
    height, width, _ = imread(logs / "figures/test_confusion_matrices.png").shape
    assert width > 1.5 * height  # two matrices beside each other


def test_a_second_compare_of_the_same_comparison_is_refused_while_one_runs(capsys):
    config = write_config("tiny.yaml", {**TINY_COMPARE, "runs": TINY_RUNS[:1]})
    LOGS.mkdir(parents=True)
    # the lock a running `nlparena compare -c tiny.yaml` holds
    with FileLock(LOGS / ".lock"), pytest.raises(SystemExit) as exit_info:
        run_cli("compare", "-c", config)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "nlparena: error: logs/compare/tiny is in use by another `nlparena compare` of tiny.yaml; "
        "run it again when that one has finished"
    ]
    assert not (LOGS / "transformer").exists()  # nothing of the other comparison's runs was touched


@pytest.mark.slow
def test_two_compares_started_together_share_no_folder_and_mark_no_run_failed(tmp_path):
    config = write_config("tiny.yaml", {**TINY_COMPARE, "runs": [TINY_RUNS[0], TINY_RUNS[2]]})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "nlparena", "compare", "-c", config]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)]
    procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    results = [(proc.wait(timeout=600), *proc.communicate()) for proc in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # the second waits its turn: refused, or (if the first was done) skips
    if codes == [0, 2]:
        refused = next(err for code, _, err in results if code == 2)
        assert refused.strip().splitlines()[-1].startswith("nlparena: error: logs/compare/tiny is in use")
    markers = [json.loads(path.read_text()) for path in LOGS.glob("*/version_*/compare.json")]
    assert sorted(marker["run"] for marker in markers) == ["seq2seq", "transformer"]
    assert all(marker["status"] == "finished" for marker in markers)
    for folder in LOGS.glob("*/version_*"):
        pids = {path.name.split(".")[-2] for path in folder.glob("events.out.tfevents.*")}
        assert len(pids) == 1, folder  # one process's event files
