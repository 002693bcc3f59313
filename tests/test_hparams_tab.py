"""TensorBoard's HPARAMS tab: one row per run, with its settings (model, data, optimizer, trainer) and every metric it
logged, whatever the model family of the other runs of the log folder; `nlparena test` of a checkpoint fills its
run's `test/*` columns. And figures sit at the step of the scalars they belong to."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams.api_pb2 import Status
from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

from nlparena.cli import NlpArenaCLI
from nlparena.events import read_events
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, TINY_MODELS, run_cli
from tests.models.test_classification import TINY_CLASSIFIERS, TINY_SPLITS

FEW_BATCHES = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3"]
TRANSFORMER = [*TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, *FEW_BATCHES]
SEQ2SEQ = [*TINY_MODELS["Seq2Seq"], "--data=Copy", *TINY_DATA, *QUIET, *FEW_BATCHES]
CLASSIFIER = [*TINY_CLASSIFIERS["RNNClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET, *FEW_BATCHES]
CHECKPOINT = "--ckpt_path=logs/Copy/Transformer/version_0/checkpoints/last.ckpt"


def session(run_dir: str | Path) -> SessionStartInfo:
    """The HPARAMS session a run folder's events hold."""
    content = read_events(run_dir).hparams[metadata.SESSION_START_INFO_TAG]
    return metadata.parse_session_start_info_plugin_data(content)


def test_a_fit_writes_a_session_of_its_settings_and_no_experiment_summary():
    warmup = ["--trainer.callbacks+=Warmup", "--trainer.callbacks.steps=2"]
    run_cli("fit", *TRANSFORMER, "--model.transformer.dropout=0.25", "--optimizer.lr=0.002", *warmup)
    run_dir = Path("logs/Copy/Transformer/version_0")
    logged = read_events(run_dir)
    # an experiment summary would be the columns of the whole log folder: TensorBoard takes the first it finds
    assert set(logged.hparams) == {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG}
    start = session(run_dir)
    assert start.group_name == str(run_dir.resolve())
    settings = {key: MessageToDict(value) for key, value in start.hparams.items()}  # the Python value
    assert settings["model"] == "Transformer" and settings["data"] == "Copy" and settings["optimizer"] == "AdamW"
    assert settings["model.transformer.d_model"] == 16 and settings["model.transformer.dropout"] == 0.25
    assert settings["model.transformer.positions"] == "sinusoidal" and settings["model.transformer.norm_first"] is True
    assert settings["model.vocab_size"] == 16  # decided by the data, linked by the CLI
    assert settings["data.batch_size"] == 8 and settings["data.train_size"] == 90 and settings["data.val_size"] == 20
    assert settings["data.train_lengths"] == "(3, 10)"
    assert settings["optimizer.lr"] == 0.002 and settings["optimizer.weight_decay"] == 0.01
    assert settings["trainer.max_epochs"] == 1 and settings["trainer.callbacks.Warmup.steps"] == 2
    assert settings["seed_everything"] == read_seed(run_dir)
    end = metadata.parse_session_end_info_plugin_data(logged.hparams[metadata.SESSION_END_INFO_TAG])
    assert end.status == Status.STATUS_SUCCESS
    # the metric values come from the run's own scalars: no step-0 point is added to the curve
    assert len(logged.scalars["val/exact_match"]) == 1


def read_seed(run_dir: Path) -> int:
    """The seed a run drew (`seed_everything: true` is replaced by the seed in its config.yaml)."""
    line = next(line for line in (run_dir / "config.yaml").read_text().splitlines() if line.startswith("seed_"))
    return int(line.split(":")[1])


def test_a_test_of_a_checkpoint_joins_its_runs_row_unless_its_model_or_data_settings_differ():
    run_cli("fit", *TRANSFORMER, "--optimizer.lr=0.002")
    run_cli("test", *TRANSFORMER, CHECKPOINT)
    run_cli("test", *TRANSFORMER, CHECKPOINT, "--model.decode=beam")
    fit, same, beam = (session(f"logs/Copy/Transformer/version_{n}") for n in range(3))
    assert same.group_name == fit.group_name and same.hparams == fit.hparams
    assert beam.group_name == str(Path("logs/Copy/Transformer/version_2").resolve())
    assert beam.hparams["model.decode"].string_value == "beam"
    # the training settings are the tested run's, not the test command's defaults
    assert beam.hparams["optimizer.lr"].number_value == 0.002
    assert {key for key in beam.hparams if beam.hparams[key] != fit.hparams[key]} == {"model.decode"}


def test_figures_are_logged_at_the_step_of_the_validation_scalars():
    epochs = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=3"]
    run_cli("fit", *TINY_MODEL, "--data=Copy", *TINY_DATA, *QUIET, *epochs)
    run_cli("fit", *TINY_CLASSIFIERS["RNNClassifier"], "--data=Sentiment", *TINY_SPLITS, *QUIET, *epochs)
    translation = read_events("logs/Copy/Transformer/version_0")
    steps = [step for step, _ in translation.scalars["val/exact_match"]]
    assert steps == [2, 5]  # after the last batch of each epoch, before its optimizer step is counted
    assert translation.images["val/attention_map/0"] == steps
    assert [step for step, _ in translation.texts["val/samples"]] == steps
    classification = read_events("logs/Sentiment/RNNClassifier/version_0")
    steps = [step for step, _ in classification.scalars["val/macro_f1"]]
    assert classification.images["val/confusion_matrix"] == steps
    assert [step for step, _ in classification.texts["val/confusion_matrix_counts"]] == steps


class TensorBoard:
    """`tensorboard --logdir LOGDIR` on a free port, asked what the HPARAMS tab of a browser asks."""

    def __init__(self, logdir: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1"]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def post(self, route: str, request: dict[str, Any]) -> dict[str, Any]:
        """A POST to the HPARAMS plugin, as its dashboard sends it (JSON body, the header TensorBoard asks of POSTs)."""
        url = f"http://127.0.0.1:{self.port}/data/plugin/hparams/{route}"
        headers = {"Content-Type": "application/json", "X-XSRF-Protected": "1"}
        post = urllib.request.Request(url, json.dumps(request).encode(), headers)
        with urllib.request.urlopen(post, timeout=10) as response:
            return json.load(response)

    def experiment(self, models: int, timeout: float = 60) -> dict[str, Any]:
        """The experiment (columns), once the server answers and has read the sessions of `models` model classes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tensorboard exited: {self.process.stderr.read().decode()[-500:]}")
            try:
                experiment = self.post("experiment", {"experimentName": "", "includeMetrics": True})
            except OSError:  # not listening yet
                experiment = {}
            model = next((h for h in experiment.get("hparamInfos", []) if h["name"] == "model"), None)
            if model is not None and len(model["domainDiscrete"]) == models:
                return experiment
            time.sleep(0.2)
        pytest.fail(f"tensorboard did not show {models} models within {timeout} s")

    def session_groups(self, experiment: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of the HPARAMS table: every column of the experiment, every status, the first 100 rows."""
        columns = [{"hparam": info["name"], "includeInResult": True} for info in experiment["hparamInfos"]]
        columns += [{"metric": info["name"], "includeInResult": True} for info in experiment["metricInfos"]]
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        request = {
            "experimentName": "",
            "allowedStatuses": statuses,
            "colParams": columns,
            "startIndex": 0,
            "sliceSize": 100,
        }
        return self.post("session_groups", request)["sessionGroups"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_hparams_tab_shows_every_runs_settings_and_headline_metrics_across_model_families():
    run_cli("fit", *TRANSFORMER, "--optimizer.lr=0.002")
    run_cli("test", *TRANSFORMER, CHECKPOINT)  # its own folder, version_1, in the fit's row
    run_cli("fit", *SEQ2SEQ, "--optimizer.lr=0.003")
    cli = NlpArenaCLI(args=["fit", *CLASSIFIER, "--data.train_size=60"])  # fit and test in one process, as compare
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    server = TensorBoard("logs")
    try:
        experiment = server.experiment(models=3)
        groups = server.session_groups(experiment)
    finally:
        server.stop()

    columns = {info["name"]: info for info in experiment["hparamInfos"]}
    assert set(columns["model"]["domainDiscrete"]) == {"Transformer", "Seq2Seq", "RNNClassifier"}
    # the union of the families' columns, and the data, optimizer and trainer settings
    assert {"model.transformer.d_model", "model.rnn.hidden_size", "model.decode", "model.num_classes"} <= set(columns)
    assert {"data", "data.batch_size", "data.train_size", "data.val_size"} <= set(columns)
    assert {"optimizer", "optimizer.lr", "trainer.max_epochs", "seed_everything"} <= set(columns)
    headline = {"val/exact_match", "test/exact_match", "val/macro_f1", "test/macro_f1"}
    assert headline <= {info["name"]["tag"] for info in experiment["metricInfos"]}

    rows = {row["hparams"]["model"]: row for row in groups}
    assert len(groups) == 3 and set(rows) == {"Transformer", "Seq2Seq", "RNNClassifier"}
    expected = {
        "Transformer": ({"optimizer.lr": 0.002, "data.batch_size": 8, "model.transformer.d_model": 16}, 2),
        "Seq2Seq": ({"optimizer.lr": 0.003, "data.train_size": 90, "data": "Copy", "model.rnn.hidden_size": 6}, 1),
        "RNNClassifier": ({"optimizer.lr": 0.001, "data.train_size": 60, "data.val_size": 40, "data": "Sentiment"}, 1),
    }
    for model, (settings, sessions) in expected.items():
        assert {key: rows[model]["hparams"].get(key) for key in settings} == settings, model
        assert len(rows[model]["sessions"]) == sessions
        assert {session["status"] for session in rows[model]["sessions"]} == {"STATUS_SUCCESS"}
    assert "model.transformer.d_model" not in rows["Seq2Seq"]["hparams"]  # a row fills its own family's columns
    assert sorted(s["name"] for s in rows["Transformer"]["sessions"]) == [
        "Copy/Transformer/version_0",
        "Copy/Transformer/version_1",
    ]

    def shown(model: str) -> dict[str, float]:
        return {value["name"]["tag"]: value["value"] for value in rows[model]["metricValues"]}

    def logged(run: str, tag: str) -> Any:
        return pytest.approx(read_events(f"logs/{run}").last(tag))

    runs = {"Transformer": "Copy/Transformer/version_0", "Seq2Seq": "Copy/Seq2Seq/version_0"}
    runs["RNNClassifier"] = "Sentiment/RNNClassifier/version_0"
    for model, run in runs.items():  # each row shows its own run's values (the losses differ from run to run)
        assert shown(model)["val/loss"] == logged(run, "val/loss")
    assert shown("Transformer")["val/exact_match"] == logged("Copy/Transformer/version_0", "val/exact_match")
    assert shown("Transformer")["test/exact_match"] == logged("Copy/Transformer/version_1", "test/exact_match")
    assert shown("Seq2Seq")["val/exact_match"] == logged("Copy/Seq2Seq/version_0", "val/exact_match")
    assert "test/exact_match" not in shown("Seq2Seq")  # never tested
    for tag in ("val/macro_f1", "test/macro_f1"):
        assert shown("RNNClassifier")[tag] == logged("Sentiment/RNNClassifier/version_0", tag)
