from pathlib import Path

from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from nlparena.events import read_events
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, run_cli


def test_a_fit_registers_its_hyperparameters_with_the_headline_metrics_for_the_hparams_tab():
    run_cli(
        "fit",
        *TINY_MODEL,
        "--model.transformer.dropout=0.25",
        "--data=Copy",
        *TINY_DATA,
        *QUIET,
        "--trainer.max_epochs=1",
    )
    run_dir = Path("logs/Copy/Transformer/version_0")
    logged = read_events(run_dir)
    content = {tag: HParamsPluginData.FromString(data) for tag, data in logged.hparams.items()}
    experiment = content["_hparams_/experiment"].experiment
    assert [metric.name.tag for metric in experiment.metric_infos] == ["val/exact_match", "test/exact_match"]
    session = content["_hparams_/session_start_info"].session_start_info.hparams
    assert session["model"].string_value == "Transformer" and session["data"].string_value == "Copy"
    assert session["transformer.d_model"].number_value == 16 and session["transformer.dropout"].number_value == 0.25
    assert session["transformer.positions"].string_value == "sinusoidal"
    # the metric values come from the run's own scalars: no step-0 point is added to the curve
    assert len(logged.scalars["val/exact_match"]) == 1
