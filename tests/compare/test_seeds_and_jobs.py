"""`nlparena compare` with seeds, a baseline, a grid search, parallel jobs and submitit: seeds fan out and are
recorded, the report's intervals and p-values are scipy's, a run's setting is picked by validation, `--jobs 2` reports
what `--jobs 1` does, a killed trial leaves the others running."""

import csv
import json
import os
import signal
from pathlib import Path

import pytest
import scipy.stats
import yaml

from nlparena.compare import jobs, runner
from nlparena.compare.config import Comparison, Record, Run, Trial, load_comparison
from nlparena.compare.groups import Group, select_settings
from nlparena.compare.local_jobs import COLD_TRIALS, WarmJob
from nlparena.events import RunEvents
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS, run_cli

SHARED = ["--data=Copy", *TINY_DATA, *QUIET, "--trainer.max_epochs=2", "--trainer.limit_val_batches=1"]
RUNS = [{"name": "transformer", "args": TINY_MODEL}, {"name": "seq2seq", "args": TINY_MODELS["Seq2Seq"]}]
SEEDED = {"name": "seeded", "shared": {"args": SHARED}, "seeds": [0, 1, 2], "baseline": "seq2seq", "runs": RUNS}
LOGS = Path("logs/compare/seeded")
METRICS = ("best_val_exact_match", "test_exact_match", "test_token_accuracy", "test_bleu", "test_loss")


@pytest.fixture(autouse=True)
def _one_thread_per_run(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def write_config(path: str, config: dict) -> str:
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """A folder where a 2-run x 3-seed comparison with a baseline ran once."""
    folder = tmp_path_factory.mktemp("seeded")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("OMP_NUM_THREADS", "1")
        run_cli("compare", "-c", write_config("seeded.yaml", SEEDED))
    return folder


def test_every_run_runs_every_seed_in_its_own_folder_and_records_it(seeded, monkeypatch):
    monkeypatch.chdir(seeded)
    rows = read_rows(LOGS / "results.csv")
    assert [(row["run"], row["seed"]) for row in rows] == [(r, s) for r in ("transformer", "seq2seq") for s in "012"]
    for row in rows:
        folder = LOGS / row["run"] / f"seed_{row['seed']}" / "version_0"
        assert row["status"] == "finished" and row["log_dir"] == str(folder)
        marker = json.loads((folder / "compare.json").read_text())
        assert marker["seed"] == int(row["seed"])
        assert marker["settings"]["args"][-1] == f"--seed_everything={row['seed']}"
        assert (folder / "test_outputs.csv").is_file()
    # different seeds, different initial weights: the test losses differ
    assert len({row["test_loss"] for row in rows if row["run"] == "transformer"}) == 3


def test_summary_intervals_and_baseline_p_values_are_scipys(seeded, monkeypatch):
    monkeypatch.chdir(seeded)
    rows = read_rows(LOGS / "results.csv")
    summary = {row["run"]: row for row in read_rows(LOGS / "summary.csv")}
    values = {run: [float(row["test_loss"]) for row in rows if row["run"] == run] for run in ("transformer", "seq2seq")}
    for run, losses in values.items():
        low, high = scipy.stats.t.interval(0.95, len(losses) - 1, loc=sum(losses) / 3, scale=scipy.stats.sem(losses))
        assert summary[run]["seeds"] == "3"
        assert float(summary[run]["test_loss_mean"]) == pytest.approx(sum(losses) / 3, rel=1e-12)
        assert float(summary[run]["test_loss_ci_low"]) == pytest.approx(low, rel=1e-9)
        assert float(summary[run]["test_loss_ci_high"]) == pytest.approx(high, rel=1e-9)
        assert float(summary[run]["test_loss_min"]) == min(losses)
    verdict = read_rows(LOGS / "verdicts.csv")
    assert [row["run"] for row in verdict] == ["transformer"] and verdict[0]["baseline"] == "seq2seq"
    exact = {run: [float(r["test_exact_match"]) for r in rows if r["run"] == run] for run in values}
    if len(set(exact["transformer"] + exact["seq2seq"])) > 1:  # scipy's test is undefined on one repeated value
        welch = scipy.stats.ttest_ind(exact["transformer"], exact["seq2seq"], equal_var=False)
        assert float(verdict[0]["seeds_p_value"]) == pytest.approx(welch.pvalue, rel=1e-9)
    assert verdict[0]["bootstrap_verdict"] in ("better", "worse", "no detectable difference")
    assert "paired bootstrap over 60 test examples" in verdict[0]["bootstrap_test"]  # 20 examples x 3 seeds
    report = (LOGS / "report.md").read_text()
    assert "## Against the baseline `seq2seq` (test/exact_match)" in report
    assert "| run | paired bootstrap over test examples | Welch's t-test over seeds |" in report  # named once, above
    assert "| `transformer` | 3 | " in report


def test_a_run_against_a_copy_of_itself_shows_no_difference(monkeypatch):
    runs = [RUNS[1], {**RUNS[1], "name": "copy"}]
    config = {"name": "twins", "shared": {"args": SHARED}, "seeds": [0, 1], "baseline": "seq2seq", "runs": runs}
    run_cli("compare", "-c", write_config("twins.yaml", config))
    (verdict,) = read_rows(Path("logs/compare/twins/verdicts.csv"))
    assert verdict["bootstrap_verdict"] == "no detectable difference"
    assert float(verdict["bootstrap_difference"]) == 0 and float(verdict["bootstrap_p_value"]) == 1


def group(setting: str, val: list[float], test: list[float]) -> Group:
    trial = Trial(Run("rnn"), 0, (("optimizer.init_args.lr", setting),))
    records = [Record(trial, "finished") for _ in val]
    rows = [{"best_val_exact_match": v, "test_exact_match": t} for v, t in zip(val, test, strict=True)]
    return Group("rnn", setting, records, [RunEvents() for _ in val], rows)


def test_a_runs_setting_is_selected_by_validation_never_by_test():
    by_val = group("0.001", val=[0.9, 0.8], test=[0.1, 0.2])
    by_test = group("0.01", val=[0.5, 0.6], test=[0.99, 0.98])
    assert select_settings([by_test, by_val], "val/exact_match", "max")["rnn"] is by_val
    assert select_settings([by_test, by_val], "val/exact_match", "min")["rnn"] is by_test  # a loss: lower wins


def test_a_grid_search_tries_every_setting_and_the_seeds_train_the_best_by_validation(monkeypatch):
    config = {
        "name": "swept",
        "shared": {"args": SHARED},
        "search": {"sampler": "grid", "pruner": "none", "space": {"optimizer.init_args.lr": [0.001, 0.01]}},
        "seeds": [0, 1],
        "runs": [RUNS[1]],
    }
    run_cli("compare", "-c", write_config("swept.yaml", config))
    logs = Path("logs/compare/swept")
    search = read_rows(logs / "search.csv")
    assert sorted(row["optimizer.init_args.lr"] for row in search) == ["0.001", "0.01"]
    chosen = max(search, key=lambda row: float(row["value"]))  # exact match: higher is better
    rows = read_rows(logs / "results.csv")
    setting = f"lr={chosen['optimizer.init_args.lr']}"
    assert [(row["setting"], row["seed"]) for row in rows] == [(setting, "0"), (setting, "1")]
    for row in rows:
        marker = json.loads((Path(row["log_dir"]) / "compare.json").read_text())
        assert f"--optimizer.init_args.lr={chosen['optimizer.init_args.lr']}" in marker["settings"]["args"]
    assert read_rows(logs / "summary.csv")[0]["setting"] == setting
    assert "## Search" in (logs / "report.md").read_text()


def test_a_sweep_is_refused_with_how_to_write_it_as_a_search(capsys):
    config = {"shared": {"args": SHARED}, "sweep": {"optimizer.init_args.lr": [0.001, 0.01]}, "runs": [RUNS[1]]}
    with pytest.raises(SystemExit) as exit_:
        run_cli("compare", "-c", write_config("old.yaml", config))
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("nlparena: error: old.yaml: sweep: replaced by search:; write the grid as `search: {sampler")
    assert not Path("logs").exists()


def test_two_jobs_report_the_metrics_of_one_job(monkeypatch):
    config = {**SEEDED, "seeds": [0, 1], "name": "one"}
    run_cli("compare", "-c", write_config("one.yaml", config), "--jobs=1")
    run_cli("compare", "-c", write_config("two.yaml", {**config, "name": "two"}), "--jobs=2")
    one, two = (read_rows(Path(f"logs/compare/{name}/results.csv")) for name in ("one", "two"))
    assert len(one) == len(two) == 4
    for a, b in zip(one, two, strict=True):
        assert (a["run"], a["seed"], a["status"]) == (b["run"], b["seed"], "finished")
        assert {metric: a[metric] for metric in METRICS} == {metric: b[metric] for metric in METRICS}


def parent_of(pid: int) -> int:
    """The parent process id of `pid` (Linux's /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_killed_trial_does_not_stop_the_others(monkeypatch, capsys):
    monkeypatch.delenv(COLD_TRIALS, raising=False)  # the default: trials forked from the warm server
    comparison = load_comparison(Path(write_config("seeded.yaml", {**SEEDED, "runs": RUNS[1:], "baseline": None})))
    parents = []

    class KillSeedOne(WarmJob):
        def __init__(self, argv: list[str], env: dict[str, str], stream: bool) -> None:
            super().__init__(argv, env, stream)
            parents.append(parent_of(self.process.pid))
            if argv[argv.index("--name") + 1].endswith("seed_1"):
                self.kill()  # while seeds 0 and 2 run

    monkeypatch.setattr(jobs, "WarmJob", KillSeedOne)
    records = runner.run_all(comparison, comparison.trials(), False, runner.check_runs(comparison), jobs=2)
    assert [(r.trial.seed, r.status) for r in records] == [(0, "finished"), (1, "failed"), (2, "finished")]
    assert records[1].data["exit_code"] == -signal.SIGKILL
    assert len(parents) == 3 and len(set(parents)) == 1 and parents[0] != os.getpid()  # each forked by the server
    out = capsys.readouterr().out
    assert "[2/3] seq2seq seed 1: failed (exit -9): " in out
    assert "progress: 2 done, 0 running, 1 failed, 0 left" in out.splitlines()[-1]


def test_the_submitit_local_executor_runs_a_two_run_comparison(monkeypatch):
    config = {"name": "cluster", "shared": {"args": SHARED}, "runs": RUNS}
    run_cli("compare", "-c", write_config("cluster.yaml", config), "--executor=submitit-local", "--jobs=2")
    rows = read_rows(Path("logs/compare/cluster/results.csv"))
    assert [(row["run"], row["status"]) for row in rows] == [("transformer", "finished"), ("seq2seq", "finished")]
    assert list(Path("logs/compare/cluster/.submitit").glob("*_log.err"))  # submitit's own job logs


def test_seeds_on_the_command_line_replace_the_configs(monkeypatch):
    comparison: Comparison = load_comparison(Path(write_config("seeded.yaml", SEEDED)))
    assert [t.seed for t in comparison.trials()] == [0, 1, 2, 0, 1, 2]
    assert [t.folder.as_posix() for t in comparison.trials((7,))] == ["transformer/seed_7", "seq2seq/seed_7"]
