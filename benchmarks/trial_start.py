"""A compare trial's time outside its fit and test: each trial in a new Python process (`NLPARENA_COLD_TRIALS=1`)
against forked from the warm server (the default).

A tiny comparison (2 runs x 2 seeds, one epoch of 90 Copy examples, `--jobs 1`, one thread) runs in rounds that
alternate the two sides in this process; a trial's overhead is the time from its "running" line to its end minus
the `fit_seconds` and `test_seconds` its `compare.json` records (process start, imports, parsing, building the model
and data, checkpoint loading, exit). Prints medians; the warm side's first trial also waits for the server to import.

    python benchmarks/trial_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from nlparena.compare import jobs, runner
from nlparena.compare.local_jobs import COLD_TRIALS, Outcome

TINY = ["--model.rnn.embed_dim=10", "--model.rnn.hidden_size=6"]
TRANSFORMER = ["--model=Transformer", "--model.transformer.d_model=16", "--model.transformer.n_heads=2"]
TRANSFORMER += ["--model.transformer.d_ff=24", "--model.transformer.num_encoder_layers=1"]
TRANSFORMER += ["--model.transformer.num_decoder_layers=1"]
DATA = ["--data=Copy", "--data.train_lengths=[3, 10]", "--data.train_size=90", "--data.val_size=20"]
DATA += ["--data.test_size=20", "--data.batch_size=8"]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_epochs=1"]
COMPARISON = {
    "name": "trial_start",
    "shared": {"args": [*DATA, *QUIET]},
    "seeds": [0, 1],
    "runs": [{"name": "seq2seq", "args": ["--model=Seq2Seq", *TINY]}, {"name": "transformer", "args": TRANSFORMER}],
}


TRIALS: list[tuple[list[str], float]] = []  # each trial's worker arguments and wall time


class TimedLauncher(jobs.Launcher):
    """Records each trial's wall time, from its start to its end, in TRIALS."""

    def run(self, argv: list[str]) -> Outcome:
        start = time.perf_counter()
        outcome = super().run(argv)
        TRIALS.append((argv, time.perf_counter() - start))
        return outcome


def overheads(cold: bool) -> list[float]:
    """Run the comparison once in a new folder; each trial's seconds outside its fit and test."""
    os.environ[COLD_TRIALS] = "1" if cold else ""
    TRIALS.clear()
    seconds = []
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # the comparison writes logs/compare/NAME/ here
        try:
            Path("trial_start.yaml").write_text(yaml.safe_dump(COMPARISON, sort_keys=False))
            runner.compare(["-c", "trial_start.yaml", "--jobs=1"])
        finally:
            os.chdir(here)
        for argv, wall in TRIALS:
            option = dict(zip(argv[: argv.index("--") : 2], argv[1 : argv.index("--") : 2], strict=True))
            run_folder = Path(folder, option["--save_dir"], option["--name"], f"version_{option['--version']}")
            marker = json.loads((run_folder / "compare.json").read_text())
            seconds.append(wall - marker["fit_seconds"] - marker["test_seconds"])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    runner.Launcher = TimedLauncher
    results: dict[str, list[float]] = {"cold": [], "warm": []}
    for round_ in range(args.rounds):
        for side in ("cold", "warm") if round_ % 2 == 0 else ("warm", "cold"):
            results[side] += overheads(cold=side == "cold")
            print(f"round {round_ + 1} {side}: {', '.join(f'{s:.2f}' for s in results[side][-4:])} s", flush=True)
    for side, seconds in results.items():
        print(f"{side}: median {statistics.median(seconds):.2f} s outside fit and test over {len(seconds)} trials")


if __name__ == "__main__":
    main()
