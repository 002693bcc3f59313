"""A compare trial's time outside its fit and test: each trial in a new Python process (`NLPARENA_COLD_TRIALS=1`)
against forked from the warm server (the default).

A tiny comparison (2 runs x 2 seeds, one epoch of 90 Copy examples, `--jobs 1`, one thread) runs in rounds that
alternate the two sides in this process; a trial's overhead is the time from its "running" line to its end minus
the `fit_seconds` and `test_seconds` its `compare.json` records (process start, imports, parsing, building the model
and data, checkpoint loading, exit). Prints medians; the warm side's first trial also waits for the server to import.

    python benchmarks/trial_start.py [--rounds 3]

With --config, a shipped comparison instead (its `curve:` cut to its first --points values, --seeds, --jobs), once
per side: its trials' median time outside fit and test, pre-training trials apart from the others.

    python benchmarks/trial_start.py --config configs/experiments/bert_pretraining.yaml --seeds 0 1 2
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


ROOT = Path(__file__).resolve().parents[1]


def overheads(cold: bool, comparison: dict = COMPARISON, options: tuple[str, ...] = ("--jobs=1",)) -> list[float]:
    """Run the comparison once in a new folder; each trial's seconds outside its fit and test."""
    return [seconds for _, seconds in named_overheads(cold, comparison, options)]


def named_overheads(cold: bool, comparison: dict, options: tuple[str, ...]) -> list[tuple[str, float]]:
    """Each trial's run name and seconds outside its fit and test, the comparison run once in a new folder (with the
    repository's configs/ linked into it, for a shipped comparison's config paths)."""
    os.environ[COLD_TRIALS] = "1" if cold else ""
    TRIALS.clear()
    seconds = []
    here = Path.cwd()
    name = comparison.get("name", "trial_start")
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # the comparison writes logs/compare/NAME/ here
        try:
            Path("configs").symlink_to(ROOT / "configs")
            Path(f"{name}.yaml").write_text(yaml.safe_dump(comparison, sort_keys=False))
            runner.compare(["-c", f"{name}.yaml", *options])
        finally:
            os.chdir(here)
        for argv, wall in TRIALS:
            option = dict(zip(argv[: argv.index("--") : 2], argv[1 : argv.index("--") : 2], strict=True))
            run_folder = Path(folder, option["--save_dir"], option["--name"], f"version_{option['--version']}")
            marker = json.loads((run_folder / "compare.json").read_text())
            seconds.append((option["--name"], wall - marker["fit_seconds"] - marker.get("test_seconds", 0.0)))
    return seconds


def shipped(config: Path, points: int) -> dict:
    """A shipped comparison with its curve cut to its first `points` values."""
    comparison = yaml.safe_load(config.read_text())
    for key, values in (comparison.get("curve") or {}).items():
        comparison["curve"][key] = values[:points]
    return {"name": config.stem, **comparison}


def main_shipped(args: argparse.Namespace) -> None:
    comparison = shipped(Path(args.config), args.points)
    options = (f"--jobs={args.jobs}", *(["--seeds", *map(str, args.seeds)] if args.seeds else []))
    for side in ("cold", "warm") if not args.warm_only else ("warm",):
        trials = named_overheads(side == "cold", comparison, options)
        groups = {"all": [s for _, s in trials], "pre-training": [s for n, s in trials if n.startswith("pretraining")]}
        groups["the others"] = [s for n, s in trials if not n.startswith("pretraining")]
        for group, seconds in groups.items():
            if seconds:
                print(
                    f"{side}, {group}: median {statistics.median(seconds):.2f} s outside fit and test, "
                    f"{len(seconds)} trials",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", help="a comparison config to run instead of the tiny one")
    parser.add_argument("--points", type=int, default=2, help="with --config: the curve's first values kept")
    parser.add_argument("--seeds", type=int, nargs="*", help="with --config: the seeds (else the config's)")
    parser.add_argument("--jobs", type=int, default=2, help="with --config: trials at a time")
    parser.add_argument("--warm-only", action="store_true", help="with --config: leave the cold side out")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    runner.Launcher = TimedLauncher
    if args.config:
        main_shipped(args)
        return
    results: dict[str, list[float]] = {"cold": [], "warm": []}
    for round_ in range(args.rounds):
        for side in ("cold", "warm") if round_ % 2 == 0 else ("warm", "cold"):
            results[side] += overheads(cold=side == "cold")
            print(f"round {round_ + 1} {side}: {', '.join(f'{s:.2f}' for s in results[side][-4:])} s", flush=True)
    for side, seconds in results.items():
        print(f"{side}: median {statistics.median(seconds):.2f} s outside fit and test over {len(seconds)} trials")


if __name__ == "__main__":
    main()
