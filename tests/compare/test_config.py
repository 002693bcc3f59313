"""The compare config: the shipped ones load as they did, and the rules that span keys are checked."""

from pathlib import Path

import pytest
import yaml

from nlparena.compare.config import load_comparison
from nlparena.compare.search_config import Choice, Range
from nlparena.errors import ConfigError

ROOT = Path(__file__).parents[2]
SHIPPED = sorted(p for p in ROOT.glob("configs/**/*.yaml") if "\nruns:" in p.read_text())


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_compare_config_loads_with_its_files_and_settings_as_written(config, monkeypatch):
    monkeypatch.chdir(ROOT)  # their config paths are relative to the repository
    raw = yaml.safe_load(config.read_text())
    comparison = load_comparison(config.relative_to(ROOT))
    assert comparison.name == raw.get("name", config.stem)
    assert comparison.shared_configs == tuple(raw["shared"].get("configs", ()))
    assert comparison.shared_args == tuple(raw["shared"].get("args", ()))
    assert comparison.seeds == tuple(raw.get("seeds", [None]))
    assert comparison.baseline == raw.get("baseline")
    assert comparison.target == raw.get("target")
    lines = {run.line_name: run for run in comparison.runs}
    assert list(lines) == [entry["name"] for entry in raw["runs"]]
    for entry in raw["runs"]:
        run = lines[entry["name"]]
        assert run.configs == tuple(entry.get("configs", ()))
        assert run.args[: len(entry.get("args", ()))] == tuple(entry.get("args", ()))
        assert all(isinstance(path, str) and Path(path).is_file() for path in run.configs)
    if "pretraining" in raw:
        assert comparison.pretraining.configs == tuple(raw["pretraining"]["configs"])


def test_a_search_key_may_start_with_two_dashes_and_a_runs_own_entries_replace_the_shared_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lr = {"low": 0.001, "high": 0.1, "log": True}
    config = {
        "search": {"trials": 3, "space": {"--optimizer.init_args.lr": lr, "model.transformer.dropout": [0.0, 0.1]}},
        "runs": [{"name": "a"}, {"name": "b", "search": {"space": {"model.transformer.dropout": [0.3]}}}],
        "seeds": [0],
    }
    Path("c.yaml").write_text(yaml.safe_dump(config))
    comparison = load_comparison(Path("c.yaml"))
    a, b = (dict(comparison.space_of(run)) for run in comparison.runs)
    assert a == {"optimizer.init_args.lr": Range(0.001, 0.1, True), "model.transformer.dropout": Choice((0.0, 0.1))}
    assert b == {"optimizer.init_args.lr": Range(0.001, 0.1, True), "model.transformer.dropout": Choice((0.3,))}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"runs": [{"name": "a"}], "seeds": [1, 1]}, "c.yaml: seeds=[1, 1]: must be a non-empty list of distinct"),
        ({"runs": [{"name": "a"}], "curve": {"data.train_size": []}}, "c.yaml: curve.data.train_size=[]: must be"),
        (
            {"runs": [{"name": "a", "search": {"space": {"x": [1, 1]}}}], "search": {"trials": 2}},
            "c.yaml: runs[0]: search.space.x=[1, 1]: must be a non-empty",
        ),
    ],
)
def test_rules_within_a_key_are_one_line_naming_the_file_and_the_key(tmp_path, monkeypatch, config, expected):
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as error:
        load_comparison(Path("c.yaml"))
    assert str(error.value).startswith(expected), error.value
