"""`nlparena compare` with a `pretraining` run and a `curve`: pre-training runs once per seed before the runs and
each seed's runs start from its own checkpoint; every run runs at every point of the curve and is judged against its
own baseline at the same point; the report has the curve's table and figure and the pretraining's numbers."""

import csv
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from nlparena.compare.config import load_comparison
from nlparena.events import read_events
from tests.conftest import QUIET, run_cli
from tests.models.test_classification import TINY_BERT

SPLITS = ["--data.val_size=40", "--data.test_size=40", "--data.batch_size=16"]
PRETRAINING = {
    "name": "mlm_nsp",
    "args": [
        "--model=BertPretraining",
        *TINY_BERT,
        "--data=Pretraining",
        "--data.train_size=90",
        *SPLITS,
        *QUIET,
        "--trainer.max_epochs=1",
    ],
}
CURVE = {
    "name": "curve",
    "seeds": [0, 1],
    "pretraining": PRETRAINING,
    "shared": {
        "args": ["--model=BertClassifier", *TINY_BERT, "--data=Sentiment", *SPLITS, *QUIET, "--trainer.max_epochs=1"]
    },
    "curve": {"data.train_size": [40, 90]},
    "runs": [
        {"name": "pretrained", "args": ["--model.pretrained={pretraining}"], "baseline": "scratch"},
        {"name": "scratch"},
    ],
}
LOGS = Path("logs/compare/curve")


@pytest.fixture(scope="module")
def curve(tmp_path_factory) -> tuple[Path, str]:
    """A folder where the comparison ran once, and what it printed."""
    folder = tmp_path_factory.mktemp("curve")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("OMP_NUM_THREADS", "1")
        Path("curve.yaml").write_text(yaml.safe_dump(CURVE, sort_keys=False))
        out = io.StringIO()
        with redirect_stdout(out):
            run_cli("compare", "-c", "curve.yaml")
    return folder, out.getvalue()


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_curve_makes_a_run_per_entry_and_value_with_its_baseline_at_the_same_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("curve.yaml").write_text(yaml.safe_dump(CURVE, sort_keys=False))
    comparison = load_comparison(Path("curve.yaml"))
    assert [run.name for run in comparison.runs] == [
        "pretrained/train_size=40",
        "scratch/train_size=40",
        "pretrained/train_size=90",
        "scratch/train_size=90",
    ]
    assert comparison.runs[2].args == ("--model.pretrained={pretraining}", "--data.train_size=90")
    assert comparison.baselines() == [
        ("pretrained/train_size=40", "scratch/train_size=40"),
        ("pretrained/train_size=90", "scratch/train_size=90"),
    ]
    assert [(run.line_name, run.point) for run in comparison.runs[:2]] == [("pretrained", 40), ("scratch", 40)]


def test_pretraining_runs_once_per_seed_first_and_each_seed_fine_tunes_from_its_own_checkpoint(curve, monkeypatch):
    folder, printed = curve
    monkeypatch.chdir(folder)
    started = [line.split(": running")[0].split("] ", 1)[1] for line in printed.splitlines() if ": running" in line]
    assert started[:2] == ["mlm_nsp seed 0", "mlm_nsp seed 1"] and len(started) == 2 + 8
    for seed in (0, 1):
        pretraining = LOGS / "mlm_nsp" / f"seed_{seed}" / "version_0"
        assert json.loads((pretraining / "compare.json").read_text())["status"] == "finished"
        checkpoint = pretraining / "checkpoints" / "last.ckpt"
        assert checkpoint.is_file()
        for size in (40, 90):
            for run in ("pretrained", "scratch"):
                marker = LOGS / run / f"train_size={size}" / f"seed_{seed}" / "version_0" / "compare.json"
                args = json.loads(marker.read_text())["settings"]["args"]
                assert args[-2:] == [f"--data.train_size={size}", f"--seed_everything={seed}"]
                given = [arg for arg in args if arg.startswith("--model.pretrained=")]
                assert given == ([f"--model.pretrained={checkpoint}"] if run == "pretrained" else [])


def test_the_report_has_the_curves_table_figure_verdicts_per_point_and_the_pretraining_numbers(curve, monkeypatch):
    folder, _ = curve
    monkeypatch.chdir(folder)
    summary = {row["run"]: row for row in rows(LOGS / "summary.csv")}
    report = (LOGS / "report.md").read_text()
    table = report.split("## Test macro_f1 along `data.train_size`")[1].split("\n## ")[0]
    for line in ("pretrained", "scratch"):
        (row,) = [r for r in table.splitlines() if r.startswith(f"| `{line}` |")]
        means = [cell.split()[0] for cell in row.split("|")[2:-1]]  # each cell starts with the mean
        assert means == [f"{float(summary[f'{line}/train_size={n}']['test_macro_f1_mean']):.3f}" for n in (40, 90)]
    verdicts = [(row["run"], row["baseline"]) for row in rows(LOGS / "verdicts.csv")]
    assert verdicts == [(f"pretrained/train_size={n}", f"scratch/train_size={n}") for n in (40, 90)]
    assert "## Against the baseline" not in report and "## Against each run's baseline" in report
    assert "| run | baseline | paired bootstrap over test examples | Welch's t-test over seeds |" in report
    assert "| `pretrained/train_size=40` | `scratch/train_size=40` | " in report
    assert (LOGS / "figures" / "test_macro_f1_curve.png").is_file()
    assert "![test_macro_f1_curve](figures/test_macro_f1_curve.png)" in report
    pretraining = rows(LOGS / "pretraining.csv")
    assert [(row["run"], row["seed"], row["status"]) for row in pretraining] == [
        ("mlm_nsp", "0", "finished"),
        ("mlm_nsp", "1", "finished"),
    ]
    for row in pretraining:
        logged = read_events(Path(row["log_dir"])).scalars["val/mlm_accuracy"]
        assert float(row["best_val_mlm_accuracy"]) == max(value for _, value in logged)
    assert "## Pretraining `mlm_nsp`" in report


def test_report_only_rebuilds_the_same_report_from_the_logs(curve, monkeypatch, capsys):
    folder, _ = curve
    monkeypatch.chdir(folder)
    before = (LOGS / "report.md").read_text()
    (LOGS / "report.md").unlink()
    run_cli("compare", "-c", "curve.yaml", "--report-only")
    assert ": running" not in capsys.readouterr().out
    assert (LOGS / "report.md").read_text() == before


BAD = {
    "placeholder-without-pretraining": (
        {**CURVE, "pretraining": None},
        "runs[0].args: {pretraining} names the pretraining checkpoint, but this comparison has no `pretraining` run",
    ),
    "unknown-run-baseline": (
        {**CURVE, "runs": [{"name": "a", "baseline": "b"}, {"name": "c"}]},
        "runs[0].baseline='b': not a run of this comparison; choose one of a, c",
    ),
    "curve-of-two-keys": (
        {**CURVE, "curve": {"data.train_size": [40], "data.batch_size": [8]}},
        "curve=",
    ),
    "bad-value-at-one-point-of-the-curve": (
        {**CURVE, "curve": {"data.train_size": [40, 0]}},
        "runs[0] (pretrained/train_size=0): data.train_size=0",
    ),
    "pretraining-named-like-a-run": (
        {**CURVE, "pretraining": {**PRETRAINING, "name": "scratch"}},
        "pretraining.name='scratch': also the name of a run; names must differ",
    ),
    "bad-pretraining-setting": (
        {**CURVE, "pretraining": {**PRETRAINING, "args": [*PRETRAINING["args"], "--data.mask_rate=0"]}},
        "pretraining (mlm_nsp): data.mask_rate=0",
    ),
}


@pytest.mark.parametrize(("config", "expected"), BAD.values(), ids=BAD.keys())
def test_a_bad_pretraining_or_curve_gives_one_line_before_any_run(tmp_path, monkeypatch, capsys, config, expected):
    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}, sort_keys=False))
    with pytest.raises(SystemExit) as exit_info:
        run_cli("compare", "-c", "bad.yaml")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nlparena: error: bad.yaml: ") and expected in err, err
    assert not Path("logs").exists()
