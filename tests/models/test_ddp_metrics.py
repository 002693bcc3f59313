"""N processes log the metrics one process logs: losses included, on a validation split that does not divide evenly."""

import math
from pathlib import Path

import pytest

from nlparena.events import read_events
from tests.conftest import QUIET, TINY_DATA, TINY_MODEL, evaluate_in_one_and_two_processes, run_cli
from tests.models.test_classification import TINY_BERT, TINY_CLASSIFIERS, TINY_SPLITS

ODD = ["--data.val_size=21", "--data.batch_size=4"]  # 2 processes: 11 and 10 examples, batches of 4, 4, 3 and 4, 4, 2
RUNS = {
    "Transformer": [*TINY_MODEL, "--data=Reverse", *TINY_DATA],
    "BertClassifier": [*TINY_CLASSIFIERS["BertClassifier"], "--data=Sentiment", *TINY_SPLITS],
    "BertPretraining": ["--model=BertPretraining", *TINY_BERT, "--data=Pretraining", *TINY_SPLITS],
}


@pytest.mark.slow
@pytest.mark.parametrize("model", RUNS)
def test_two_process_validation_logs_the_metrics_of_one_process(model):
    args = [*RUNS[model], *ODD, *QUIET]
    run_cli("fit", *args, "--trainer.max_epochs=1")
    run_dir = next(Path("logs").glob("*/*/version_0"))
    evaluate_in_one_and_two_processes("validate", args, run_dir / "checkpoints/last.ckpt")
    # one folder per run: the second process of the DDP run claims none
    assert sorted(path.name for path in run_dir.parent.iterdir()) == ["version_0", "version_1", "version_2"]
    one, two = (read_events(run_dir.parent / f"version_{v}").scalars for v in (1, 2))
    metrics = sorted(tag for tag in one if tag.startswith("val/"))
    assert "val/loss" in metrics and metrics == sorted(tag for tag in two if tag.startswith("val/"))
    for tag in metrics:
        assert math.isclose(one[tag][-1][1], two[tag][-1][1], rel_tol=0, abs_tol=1e-6), (tag, one[tag], two[tag])
