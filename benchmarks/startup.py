"""What a command spends before and around its training: the floor of `import lightning`, `nlparena fit --help`, a
refused bad key, the quick start split into phases, and a comparison trial's time outside its fit and test.

Each measurement is a fresh process launched by this one, and the kinds alternate within each of --rounds rounds
(their order reversed every other round) so that the machine's load weighs on each alike; prints medians.

- floor: `python -c "import lightning"`, launch to exit: what any Lightning command pays first;
- help: `python -m nlparena fit --help`;
- bad key: `python -m nlparena fit -c configs/quickstart.yaml --model.transformer.d_modl=8` (refused, exit 2);
- quick start: `nlparena fit -c configs/quickstart.yaml` in a child of this script (in a temporary folder), with
  stamps taken from the parent's launch: imports (torch, Lightning, nlparena), parse and build (the config parsed, the
  model, trainer and data module built, less the data's own `setup`), data (`setup` of the data module), training (the
  fit loop less validation and checkpoint writes), validation (sanity check included), checkpoint writes
  (`Trainer.save_checkpoint`), exit (from `main` returning to the process's end);
- trials: `benchmarks/trial_start.py`'s tiny comparison (2 runs x 2 seeds, `--jobs 1`): each trial's wall time less
  the fit and test seconds its `compare.json` records, cold (`NLPARENA_COLD_TRIALS=1`, a new interpreter per trial)
  and warm (forked from the comparison's server, the default), once per round each.

    python benchmarks/startup.py [--rounds 3] [--no-trials]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
COMMANDS = {
    "floor": [sys.executable, "-c", "import lightning"],
    "help": [sys.executable, "-m", "nlparena", "fit", "--help"],
    "bad key": [sys.executable, "-m", "nlparena", "fit", "-c", str(QUICKSTART), "--model.transformer.d_modl=8"],
}
SPENT: dict[str, float] = {"data": 0.0, "validation": 0.0, "checkpoint writes": 0.0}  # the child's sums
MARKS: dict[str, float] = {}  # the child's stamps, seconds since its launch
LAUNCHED = 0.0


def mark(name: str) -> None:
    MARKS[name] = time.monotonic() - LAUNCHED


def timed(owner: type, method: str, part: str) -> None:
    """Add the seconds spent in `owner.method` to SPENT[part] (a benchmark may patch what it measures)."""
    original = getattr(owner, method)

    def wrapper(*args, **kwargs):
        start = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[part] += time.monotonic() - start

    setattr(owner, method, wrapper)


class Phases(pl.Callback):
    """Stamps the fit's start and end and sums the validation loops' time (given as `--trainer.callbacks+=`)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        mark("fit start")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.validation_start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        SPENT["validation"] += time.monotonic() - self.validation_start

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        mark("fit end")


def child(launched: float, out: Path) -> None:
    """The quick start in this process, stamped; its phases written to `out` as JSON."""
    global LAUNCHED
    LAUNCHED = launched
    mark("interpreter")
    import nlparena.__main__ as entry  # torch, Lightning and nlparena, as `nlparena fit` imports them
    from nlparena.data.splits import SplitDataModule

    mark("imports")
    timed(SplitDataModule, "setup", "data")
    timed(pl.Trainer, "save_checkpoint", "checkpoint writes")
    entry.main(["fit", "-c", str(QUICKSTART), "--trainer.callbacks+=startup.Phases"])
    mark("main returned")
    out.write_text(json.dumps({"marks": MARKS, "spent": SPENT}))


def phases(result: dict, wall: float) -> dict[str, float]:
    """Seconds per phase of one quick start, from its stamps and sums and the parent's wall time."""
    marks, spent = result["marks"], result["spent"]
    fit = marks["fit end"] - marks["fit start"]
    return {
        "imports": marks["imports"],
        "parse and build": marks["fit start"] - marks["imports"] - spent["data"],
        "data": spent["data"],
        "training": fit - spent["validation"] - spent["checkpoint writes"],
        "validation": spent["validation"],
        "checkpoint writes": spent["checkpoint writes"],
        "exit": wall - marks["main returned"],
        "total": wall,
    }


def wall_of(argv: list[str], expect: int = 0, **kwargs) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
    if done.returncode != expect:
        sys.exit(f"{' '.join(argv)}: exit {done.returncode}, expected {expect}\n{done.stderr[-2000:]}")
    return time.monotonic() - start


def quickstart() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:  # the run's logs/ go there
        out = Path(folder, "phases.json")
        argv = [sys.executable, __file__, "--child", "--out", str(out), "--launched"]
        path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}  # `startup.Phases` importable in the child
        start = time.monotonic()
        wall = wall_of([*argv, repr(start)], cwd=folder, env=env)
        return phases(json.loads(out.read_text()), wall)


def trial_overheads(cold: bool) -> list[float]:
    """`trial_start.py`'s comparison once: each trial's seconds outside its fit and test."""
    import trial_start

    trial_start.runner.Launcher = trial_start.TimedLauncher
    return trial_start.overheads(cold)


def measure_round(order: list[str], results: dict[str, list], trials: bool) -> None:
    for kind in order:
        if kind == "quick start":
            results[kind].append(quickstart())
        elif kind in ("cold trials", "warm trials"):
            if trials:
                results[kind] += trial_overheads(cold=kind == "cold trials")
        else:
            results[kind].append(wall_of(COMMANDS[kind], expect=2 if kind == "bad key" else 0, cwd=ROOT))


def report(results: dict[str, list]) -> None:
    floor = statistics.median(results["floor"])
    print(f"\n{'median, seconds':44s} {'value':>8s} {'beyond the floor':>17s}")
    for kind in ("floor", "help", "bad key"):
        value = statistics.median(results[kind])
        print(f"{kind:44s} {value:8.2f} {value - floor:17.2f}")
    runs = results["quick start"]
    for phase in runs[0]:
        value = statistics.median(run[phase] for run in runs)
        beyond = f"{value - floor:17.2f}" if phase == "total" else ""
        print(f"{'quick start: ' + phase:44s} {value:8.2f} {beyond}")
    for kind in ("cold trials", "warm trials"):
        if results[kind]:
            value = statistics.median(results[kind])
            print(f"{kind + ': outside fit and test':44s} {value:8.2f}   ({len(results[kind])} trials)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-trials", dest="trials", action="store_false", help="leave the comparison trials out")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import startup  # this file as a module, so that `startup.Phases` given to the CLI stamps the same MARKS

        startup.child(args.launched, Path(args.out))
        return
    kinds = ["floor", "help", "bad key", "quick start", "cold trials", "warm trials"]
    results: dict[str, list] = {kind: [] for kind in kinds}
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    for round_ in range(args.rounds):
        measure_round(kinds if round_ % 2 == 0 else kinds[::-1], results, args.trials)
        print(f"round {round_ + 1} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    report(results)


if __name__ == "__main__":
    main()
