"""`nlparena compare -c configs/compare/NAME.yaml [--seeds S ...] [--jobs N] [--executor E] [--force]
[--report-only] [--storage URL]`: run a set of configs on the same data (each tuned first by its `search:`, if the
config has one: `search_runner`), each with every seed, each in its own process, and turn their event files and test
outputs into a report.

Trials log under `logs/compare/NAME/<run>[/<setting>][/seed_S]/version_N/` (one TensorBoard parent folder). A trial
whose newest attempt with the same settings finished (`compare.json` in its version folder) is skipped, so a crash
costs only the trial it hit; `--force` runs it again in a new version folder (old logs are never touched). The
report (`logs/compare/NAME/report.md`, `results.csv`, `summary.csv`, `figures/`) is rebuilt after the trials, or
alone by `--report-only`.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse.typing import NonNegativeInt

from nlparena.cli.lightning import NlpArenaCLI
from nlparena.compare.config import (
    ERROR_CHARS,
    MARKER,
    TRIAL_LOG,
    Comparison,
    Record,
    Trial,
    load_comparison,
    logger_args,
    next_version,
    seed_of,
)
from nlparena.compare.config_file import check_seeds
from nlparena.compare.jobs import (
    EXECUTORS,
    Launcher,
    Outcome,
    check_executor,
    default_jobs,
    submitit_executor,
    worker_argv,
)
from nlparena.compare.lock import one_comparison_at_a_time
from nlparena.compare.progress import Progress, failure_reason
from nlparena.compare.report import best_value, write_report
from nlparena.compare.search_config import SEARCH_SEEDS
from nlparena.errors import ConfigError, OneLineArgumentParser, config_error_in


@contextmanager
def _quiet_lightning():
    """Silence Lightning's start-up lines (devices, seed) while every run's config is checked."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _model_info(comparison: Comparison, trial: Trial, where: str) -> dict[str, str]:
    """Build a trial's run as its process will and make the checks `nlparena fit` makes when it starts (nothing is
    written): its model class and headline metric, else one ConfigError line naming `where`. `{pretraining}` stands
    for no checkpoint here: it does not exist yet."""
    args = [*comparison.fit_args(trial, pretrained="null"), *logger_args(str(comparison.log_dir), trial.run.name, 0)]
    try:
        with _quiet_lightning():
            cli = NlpArenaCLI(args=args, run=False, save_config_callback=None)
            cli.check_run_can_start()  # what `nlparena fit` checks when it starts: once here, not in every trial
            model = cli.model
    except Exception as err:  # any error building a run is a mistake in its settings: one line, none started
        cause = config_error_in(err) or f"{type(err).__name__}: {err}"
        raise ConfigError(f"{comparison.source}: {where}: {cause}") from None
    return {
        "model": type(model).__name__,
        "headline_metric": model.headline_metric,
        "headline_mode": model.headline_mode,
    }


def check_runs(comparison: Comparison) -> dict[str, dict[str, str]]:
    """Parse and instantiate the pretraining run and every run (as its search trials at the ends and values of its
    space, with the search's args), as its process will (nothing is written), so that a typo in the last run fails
    before the first one trains; returns each run's model class and headline metric."""
    found: dict[str, dict[str, str]] = {}
    for trial in comparison.pretraining_trials()[:1]:
        found[trial.run.name] = _model_info(comparison, trial, f"pretraining ({trial.run.name})")
    lines = list(dict.fromkeys(run.line_name for run in comparison.runs))
    for run in comparison.runs:
        probes = [Trial(run, comparison.seeds[0])]
        if comparison.search:
            probes += [Trial.searching(run, 0, point) for point in comparison.search.probes(comparison.space_of(run))]
        for trial in probes:
            where = f"runs[{lines.index(run.line_name)}] ({f'{run.name} {trial.setting_name}'.strip()})"
            found[run.name] = _model_info(comparison, trial, where)
    metrics = {found[run.name]["headline_metric"] for run in comparison.runs}  # the pretraining's is its own
    if len(metrics) > 1:
        named = ", ".join(f"{run} {info['headline_metric']}" for run, info in found.items())
        raise ConfigError(f"{comparison.source}: runs report different headline metrics ({named}); compare one task")
    return found


def pretrained_checkpoints(records: list[Record]) -> dict[int | None, str]:
    """Seed -> `last.ckpt` of each finished pretraining trial (its weights at the end of pre-training)."""
    return {
        record.trial.seed: str(record.version_dir / "checkpoints" / "last.ckpt")
        for record in records
        if record.status == "finished"
    }


# -- attempts and their markers -------------------------------------------------------------------------------------


def attempts(trial: Trial, trial_dir: Path) -> list[Record]:
    """Every version folder of a trial that holds a `compare.json`, oldest first."""
    records = []
    for marker in trial_dir.glob(f"version_*/{MARKER}"):
        try:
            data = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a marker cut short by a killed process: not a finished run
        records.append(Record(trial, data.get("status", "failed"), marker.parent, data))
    return sorted(records, key=lambda record: record.version)


def newest(records: list[Record], settings: dict[str, Any]) -> Record | None:
    """The attempt a report shows: one with the current settings before others, finished before failed, then the
    newest."""
    if not records:
        return None
    return max(records, key=lambda r: (r.data.get("settings") == settings, r.status == "finished", r.version))


def finish(comparison: Comparison, trial: Trial, version: int, info: dict[str, str], outcome: Outcome) -> Record:
    """The record of a trial's process that ended: its `compare.json` if it finished; else a failure recorded in
    its version folder (made if the run died before its logger made it), so that the next invocation and
    `--report-only` list it."""
    version_dir = comparison.log_dir / trial.folder / f"version_{version}"
    marker = version_dir / MARKER
    if outcome.exit_code == 0 and marker.is_file():
        return Record(trial, "finished", version_dir, json.loads(marker.read_text()))
    last = failure_reason(outcome)
    data = {
        "status": "failed",
        "run": trial.run.name,
        "seed": seed_of(comparison.fit_args(trial)),  # the one from a config file is not known here
        **info,
        "exit_code": outcome.exit_code,
        "error": last if len(last) <= ERROR_CHARS else last[: ERROR_CHARS - 1] + "…",
        "log": str(version_dir / TRIAL_LOG),
        "log_tail": outcome.tail,
        "settings": comparison.settings(trial),
    }
    version_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(data, indent=2) + "\n")
    return Record(trial, "failed", version_dir, data)


def _outcome(record: Record, seconds: float) -> str:
    """`finished in 183 s, best val/exact_match 0.912` or `failed (exit 1): <why> (after 12 s; log: <its log>)`."""
    if record.status != "finished":
        failed = f"failed (exit {record.data.get('exit_code')}): {record.data.get('error')}"
        return f"{failed} (after {seconds:.0f} s; log: {record.data.get('log')})"
    metric = record.data.get("headline_metric", "")
    best = best_value(record)
    return f"finished in {seconds:.0f} s, best {metric} {'n/a' if best is None else f'{best:.3f}'}"


@dataclass(frozen=True)
class Pending:
    """A trial to run: its place among all the trials (1-based) and the version folder it will write."""

    position: int
    trial: Trial
    version: int


def run_trial(
    comparison: Comparison, item: Pending, info: dict[str, str], launcher: Launcher, progress: Progress, total: int
) -> Record:
    """Run one trial in its own process (its output to its log) and record how it ended; returns the attempt the
    report shows."""
    trial = item.trial
    fit_args = comparison.fit_args(trial)
    argv = worker_argv(comparison.log_dir, trial.folder, item.version, fit_args, stop_at=comparison.stop_at(trial))
    path = comparison.log_dir / trial.folder / f"version_{item.version}"
    progress.started(f"[{item.position}/{total}] {trial.label}: running ({path})")
    start = time.perf_counter()
    record = finish(comparison, trial, item.version, info, launcher.run(argv))
    seconds = time.perf_counter() - start
    progress.ended(
        record.status == "finished", seconds, f"[{item.position}/{total}] {trial.label}: {_outcome(record, seconds)}"
    )
    # the report shows the newest finished attempt (an earlier one if this --force attempt failed)
    return newest(attempts(trial, comparison.log_dir / trial.folder), comparison.settings(trial)) or record


def launcher_for(comparison: Comparison, jobs: int, executor: str) -> Launcher:
    """What starts the trials: `jobs` local processes at a time, or jobs of a submitit executor."""
    cluster = None
    if executor != "local":
        cluster = submitit_executor(executor, comparison.log_dir / ".submitit", comparison.slurm, jobs)
    return Launcher(jobs, cluster)


def run_all(
    comparison: Comparison,
    trials: list[Trial],
    force: bool,
    infos: dict[str, dict[str, str]],
    jobs: int = 1,
    executor: str = "local",
) -> list[Record]:
    """Run (or skip) every trial, `jobs` at a time (a pool of threads, each waiting on its trial's process), a line
    when each starts and ends; returns the attempt each ran or kept. `infos` is what `check_runs` found of each run."""
    records: dict[int, Record] = {}
    pending: list[Pending] = []
    for position, trial in enumerate(trials, start=1):
        trial_dir = comparison.log_dir / trial.folder
        settings = comparison.settings(trial)
        done = [r for r in attempts(trial, trial_dir) if r.status == "finished" and r.data.get("settings") == settings]
        if done and not force:
            print(
                f"[{position}/{len(trials)}] {trial.label}: skipped (finished in {done[-1].version_dir.name})",
                flush=True,
            )
            records[position] = done[-1]
        else:
            pending.append(Pending(position, trial, next_version(trial_dir)))
    if not pending:
        return [records[i] for i in sorted(records)]
    launcher, progress = launcher_for(comparison, jobs, executor), Progress(len(pending), jobs)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="trial") as pool:
        futures = {
            item.position: pool.submit(
                run_trial, comparison, item, infos[item.trial.run.name], launcher, progress, len(trials)
            )
            for item in pending
        }
        try:
            records |= {position: future.result() for position, future in futures.items()}
        except BaseException:  # interrupted (Ctrl-C), or a trial could not be recorded: stop the others
            launcher.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [records[i] for i in sorted(records)]


def logged_record(comparison: Comparison, trial: Trial) -> Record:
    """The trial's attempt to report, from its logs ("not run" if it has none)."""
    found = newest(attempts(trial, comparison.log_dir / trial.folder), comparison.settings(trial))
    return found or Record(trial, "not run")


def logged_records(comparison: Comparison, trials: list[Trial]) -> list[Record]:
    """For `--report-only`: each trial's attempt to report, from its logs; ConfigError if no trial has any."""
    records = [logged_record(comparison, trial) for trial in trials]
    if all(record.status == "not run" for record in records):
        raise ConfigError(
            f"--report-only: no run of {comparison.source} has logs under {comparison.log_dir}; "
            f"run `nlparena compare -c {comparison.source}` first"
        )
    return records


def _parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="nlparena compare",
        description="Run the configs of a comparison (each like `nlparena fit` then `test`, in its own process, "
        "with every seed) and write logs/compare/NAME/report.md, results.csv, summary.csv and figures/.",
    )
    parser.add_argument("-c", "--config", required=True, type=Path, help="compare config (configs/compare/*.yaml)")
    parser.add_argument(
        "--seeds", nargs="+", type=NonNegativeInt, help="seeds to run every run with (replaces the config's)"
    )
    parser.add_argument("--jobs", type=int, help="trials at a time (default: one per visible GPU, else 1)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help="where trials run (default: local)")
    parser.add_argument("--force", action="store_true", help="run finished runs again (in a new version folder)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from existing logs only")
    parser.add_argument(
        "--storage",
        help="Optuna storage of the search's studies (default: sqlite:///logs/compare/NAME/search.db); a PostgreSQL "
        "or MySQL URL lets compare processes on several machines share one study",
    )
    return parser


def _check_search_options(comparison: Comparison, seeds: tuple[int, ...] | None, storage: str | None) -> None:
    """Seeds the search trials never use, and a `--storage` only for a search, that Optuna can open."""
    if comparison.search and any(seed >= SEARCH_SEEDS for seed in seeds or ()):
        given = " ".join(map(str, seeds or ()))
        raise ConfigError(f"--seeds {given}: seeds from {SEARCH_SEEDS} on are the search trials' own")
    if storage is not None and not comparison.search:
        raise ConfigError(f"--storage: this comparison has no search: to store ({comparison.source} has no `search:`)")
    if storage is not None:
        from nlparena.compare.search_runner import open_storage  # imports Optuna: only for a comparison that searches

        open_storage(storage)  # one line now if it cannot be opened, before anything runs


def compare(args: list[str]) -> Path:
    """`nlparena compare`: check the config and every run, run what is not finished, write the report."""
    parser = _parser()
    opts = parser.parse_args(args)
    if opts.force and opts.report_only:
        raise ConfigError("--force and --report-only: choose one (--report-only runs nothing)")
    if opts.jobs is not None and opts.jobs < 1:
        raise ConfigError(f"--jobs {opts.jobs}: must be at least 1")
    seeds = check_seeds(opts.seeds, "--seeds") if opts.seeds is not None else None
    check_executor(opts.executor)
    comparison = load_comparison(opts.config)
    before = comparison.pretraining_trials(seeds)
    _check_search_options(comparison, seeds, opts.storage)
    if comparison.search:
        from nlparena.compare import search_runner  # imports Optuna: only for a comparison that searches
    if opts.report_only:
        studies = search_runner.existing_studies(comparison, opts.storage) if comparison.search else {}
        comparison.chosen.update({name: best for name, study in studies.items() if (best := study.best())})
        pretraining = [logged_record(comparison, trial) for trial in before]
        comparison.checkpoints.update(pretrained_checkpoints(pretraining))
        records = logged_records(comparison, comparison.trials(seeds))
        report = write_report(comparison, records, pretraining, studies)
    else:
        infos = check_runs(comparison)  # every run's settings, before anything is written
        with one_comparison_at_a_time(comparison):
            jobs = opts.jobs or default_jobs()
            pretraining = run_all(comparison, before, opts.force, infos, jobs, opts.executor) if before else []
            comparison.checkpoints.update(pretrained_checkpoints(pretraining))
            studies = {}
            if comparison.search:
                launcher = launcher_for(comparison, jobs, opts.executor)
                studies = search_runner.search(comparison, infos, launcher, opts.storage)
            records = run_all(comparison, comparison.trials(seeds), opts.force, infos, jobs, opts.executor)
            report = write_report(comparison, records, pretraining, studies)
        records += pretraining
    failed = [record.trial.label for record in records if record.status == "failed"]
    print(f"report: {report}" + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else ""), flush=True)
    if failed and not opts.report_only:
        raise SystemExit(1)  # the report is written; the exit status says that a run of this invocation failed
    return report
