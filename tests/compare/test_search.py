"""`search:` in `nlparena compare`: on a planted problem whose best lr is known (`planted.py`), TPE finds it within a
factor 3 in 12 trials and the random and grid samplers run the same way; a trial far below the others at its first
report is pruned and counts against the budget; a run's setting is chosen by validation, never by test."""

import csv
import json
import math
from pathlib import Path

import matplotlib
import optuna
import pytest
import yaml

from nlparena.__main__ import main
from nlparena.events import read_events
from tests.compare.planted import BEST_LR, planted_value
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli
from tests.models.test_classification import TINY_CLASSIFIERS

FAST = ["--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.max_epochs=1"]
PLANTED = ["--model=tests.compare.planted.PlantedTransformer", *TINY_MODEL[1:]]
SHARED = ["--data=Copy", *TINY_DATA, *QUIET, *PLANTED, *FAST]
LR = "optimizer.init_args.lr"


@pytest.fixture(autouse=True)
def _one_thread_per_trial(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)


def comparison(name: str, search: dict, shared: list[str] = SHARED, runs: list | None = None) -> str:
    config = {"name": name, "seeds": [0], "shared": {"args": shared}, "search": search, "runs": runs or [{"name": "a"}]}
    Path(f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return f"{name}.yaml"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def study(name: str, run: str = "a") -> optuna.Study:
    return optuna.load_study(study_name=f"{name}/{run}", storage=f"sqlite:///logs/compare/{name}/search.db")


def chosen_lr(name: str) -> float:
    (row,) = read_rows(Path(f"logs/compare/{name}/summary.csv"))
    return float(row["setting"].removeprefix("lr="))


def test_tpe_finds_the_planted_best_lr_within_a_factor_3_in_12_trials():
    space = {LR: {"low": 1e-6, "high": 1.0, "log": True}}
    run_cli("compare", "-c", comparison("tpe", {"trials": 12, "sampler": "tpe", "pruner": "none", "space": space}))
    trials = study("tpe").get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 12
    for trial in trials:  # each trial's value is what the planted problem gives its lr
        assert trial.value == pytest.approx(planted_value(trial.params[LR]), abs=1e-6)
    lr = chosen_lr("tpe")
    assert abs(math.log10(lr / BEST_LR)) < math.log10(3), lr
    assert lr == max(trials, key=lambda t: t.value).params[LR]  # the seeds train the best trial's lr


@pytest.mark.parametrize(
    ("sampler", "space", "trials"),
    [("random", {"low": 1e-6, "high": 1.0, "log": True}, 4), ("grid", [1e-5, BEST_LR, 0.3], None)],
)
def test_the_random_and_grid_samplers_run_the_same_search(sampler, space, trials):
    search = {"sampler": sampler, "pruner": "none", "space": {LR: space}, **({"trials": trials} if trials else {})}
    run_cli("compare", "-c", comparison(sampler, search))
    rows = read_rows(Path(f"logs/compare/{sampler}/search.csv"))
    assert [row["state"] for row in rows] == ["finished"] * (trials or 3)
    if sampler == "grid":  # every point of the grid once
        assert sorted(float(row[LR]) for row in rows) == [1e-5, BEST_LR, 0.3]
    best = max(rows, key=lambda row: float(row["value"]))
    assert chosen_lr(sampler) == float(best[LR])
    assert "## Search" in Path(f"logs/compare/{sampler}/report.md").read_text()
    assert matplotlib.rcParams["axes.facecolor"] == "white"  # Optuna's figure style stayed in its own figure


@pytest.mark.parametrize("prune_after", [0, 1])
def test_a_trial_far_below_the_others_at_its_first_report_is_pruned_and_counts_against_the_budget(prune_after):
    space = {LR: {"low": 1e-6, "high": 1.0, "log": True}}
    search = {"trials": 10, "sampler": "random", "pruner": "median", "seed": 3, "space": space}
    search |= {"prune_after": prune_after} if prune_after else {}  # the first `prune_after` reports are never pruned
    three_validations = [*SHARED, "--trainer.max_epochs=3"]
    run_cli("compare", "-c", comparison("pruned", search, three_validations))
    trials = study("pruned").get_trials()
    states = [t.state for t in trials]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and states.count(optuna.trial.TrialState.COMPLETE) + len(pruned) == 10 == len(trials)
    for trial in pruned:  # stopped at its first report, below the median of the earlier finished trials' first
        earlier = [t.intermediate_values[0] for t in trials if t.number < trial.number and t.state.name == "COMPLETE"]
        assert list(trial.intermediate_values) == list(range(prune_after + 1))
        assert trial.intermediate_values[0] < sorted(earlier)[len(earlier) // 2]
        marker = json.loads(Path(trial.user_attrs["log_dir"], "compare.json").read_text())
        assert marker["status"] == "pruned" and len(marker["search_values"]) == prune_after + 1
    for trial in trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(trial.intermediate_values) == 3
    report = Path("logs/compare/pruned/report.md").read_text()
    assert f"| `a` | 10 | {10 - len(pruned)} | {len(pruned)} | 0 |" in report


def test_the_setting_with_the_best_test_score_but_a_worse_validation_score_is_not_selected():
    # every test label is replaced by the next class's (the 4 classes in a ring): a model that learned the task (lr
    # 0.01, the better validation score) scores worst on test, one that learned nothing (lr 1e-7) better
    sizes = ["--data.train_size=600", "--data.val_size=100", "--data.test_size=100"]
    main(["export", "--data=Sentiment", *sizes, "--out=reviews"])
    lines = Path("reviews/test.tsv").read_text().splitlines()
    rows = [line.rsplit("\t", 1) for line in lines[1:]]
    labels = sorted({label for _, label in rows})
    shifted = [f"{text}\t{labels[(labels.index(label) + 1) % len(labels)]}" for text, label in rows]
    Path("reviews/test.tsv").write_text("\n".join([lines[0], *shifted]) + "\n")
    shared = [
        *TINY_CLASSIFIERS["RNNClassifier"],
        "--data=TextClassification",
        *(f"--data.{split}_file=reviews/{split}.tsv" for split in ("train", "val", "test")),
        "--data.tokenizer.kind=word",
        *QUIET,
        "--trainer.max_epochs=8",
    ]
    search = {"sampler": "grid", "pruner": "none", "space": {LR: [1e-7, 0.01]}}
    run_cli("compare", "-c", comparison("by_val", search, shared))
    runs = [{"name": "lr_1e-7", "args": [f"--{LR}=1e-7"]}, {"name": "lr_0.01", "args": [f"--{LR}=0.01"]}]
    config = {"name": "both", "seeds": [0], "shared": {"args": shared}, "runs": runs}
    Path("both.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run_cli("compare", "-c", "both.yaml")  # each setting trained and tested, to show the test scores

    test = {row["run"]: float(row["test_macro_f1"]) for row in read_rows(Path("logs/compare/both/results.csv"))}
    val = {row[LR]: float(row["value"]) for row in read_rows(Path("logs/compare/by_val/search.csv"))}
    assert test["lr_1e-7"] > test["lr_0.01"]  # the setting with the best test score ...
    assert val["1e-07"] < val["0.01"]  # ... has the worse validation score ...
    assert chosen_lr("by_val") == 0.01  # ... and is not the one selected
    (tested,) = read_rows(Path("logs/compare/by_val/results.csv"))
    assert float(tested["test_macro_f1"]) < test["lr_1e-7"]
    for trial in Path("logs/compare/by_val/a/search").glob("trial_*/version_0"):  # a search trial is never tested
        assert json.loads((trial / "compare.json").read_text())["tested_checkpoint"] is None
        assert not [tag for tag in read_events(trial).scalars if tag.startswith("test/")]


def test_runs_with_spaces_of_their_own_share_one_search_csv_with_a_column_per_key():
    search = {"sampler": "grid", "pruner": "none", "space": {LR: [1e-3]}}
    runs = [{"name": "a"}, {"name": "b", "search": {"space": {"model.transformer.dropout": [0.0, 0.1]}}}]
    run_cli("compare", "-c", comparison("two_spaces", search, runs=runs))
    rows = read_rows(Path("logs/compare/two_spaces/search.csv"))
    dropouts = sorted((row["run"], row["model.transformer.dropout"]) for row in rows)
    assert dropouts == [("a", ""), ("b", "0.0"), ("b", "0.1")]
    assert {row[LR] for row in rows} == {"0.001"}
