"""`nlparena compare -c configs/compare/NAME.yaml [--force] [--report-only]`: run a set of configs on the same data
and seed, each in its own process, and turn their event files into a report.

Runs log under `logs/compare/NAME/<run>/version_N/` (one TensorBoard parent folder). A run whose newest attempt
with the same settings finished (`compare.json` in its version folder) is skipped, so a crash costs only the run it
hit; `--force` runs it again in a new version folder (old logs are never touched). The report
(`logs/compare/NAME/report.md`, `results.csv`, `figures/`) is rebuilt after the runs, or alone by `--report-only`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from nlparena.cli.lightning import NlpArenaCLI
from nlparena.compare.config import MARKER, Comparison, Record, Run, load_comparison, logger_args, run_settings
from nlparena.compare.report import best_value, write_report
from nlparena.errors import ConfigError, OneLineArgumentParser, config_error_in

ERROR_LINES = 20  # of a failed run's stderr, kept in its compare.json
ERROR_CHARS = 300  # of its last line, shown in the terminal and the report (exception messages can be long)


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


def check_runs(comparison: Comparison) -> dict[str, dict[str, str]]:
    """Parse and instantiate every run as its process will (nothing is written), so that a typo in the last run
    fails before the first one trains; returns each run's model class and headline metric."""
    found: dict[str, dict[str, str]] = {}
    for i, run in enumerate(comparison.runs):
        args = [*comparison.fit_args(run), *logger_args(str(comparison.log_dir), run.name, 0)]
        try:
            with _quiet_lightning():
                model = NlpArenaCLI(args=args, run=False, save_config_callback=None).model
        except Exception as err:  # any error building a run is a mistake in its settings: one line, no run started
            cause = config_error_in(err) or f"{type(err).__name__}: {err}"
            raise ConfigError(f"{comparison.source}: runs[{i}] ({run.name}): {cause}") from None
        found[run.name] = {
            "model": type(model).__name__,
            "headline_metric": model.headline_metric,
            "headline_mode": model.headline_mode,
        }
    metrics = {info["headline_metric"] for info in found.values()}
    if len(metrics) > 1:
        named = ", ".join(f"{run} {info['headline_metric']}" for run, info in found.items())
        raise ConfigError(f"{comparison.source}: runs report different headline metrics ({named}); compare one task")
    return found


# -- attempts and their markers -------------------------------------------------------------------------------------


def attempts(run_dir: Path) -> list[Record]:
    """Every version folder of a run that holds a `compare.json`, oldest first."""
    records = []
    for marker in run_dir.glob(f"version_*/{MARKER}"):
        try:
            data = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a marker cut short by a killed process: not a finished run
        records.append(Record(run_dir.name, data.get("status", "failed"), marker.parent, data))
    return sorted(records, key=lambda record: record.version)


def newest(records: list[Record], settings: dict[str, Any]) -> Record | None:
    """The attempt a report shows: one with the current settings before others, finished before failed, then the
    newest."""
    if not records:
        return None
    return max(records, key=lambda r: (r.data.get("settings") == settings, r.status == "finished", r.version))


def next_version(run_dir: Path) -> int:
    """One past the highest `version_N` (with or without a marker), as TensorBoardLogger would pick."""
    numbers = [int(p.name[8:]) for p in run_dir.glob("version_*") if p.name[8:].isdigit()]
    return max(numbers, default=-1) + 1


def _tee_stderr(proc: subprocess.Popen) -> deque[str]:
    """Copy the child's stderr to ours as it comes (the user sees warnings and tracebacks) and keep its tail."""
    tail: deque[str] = deque(maxlen=ERROR_LINES)
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        sys.stderr.write(line)
        sys.stderr.flush()
        if line.strip():
            tail.append(line.rstrip())
    return tail


def execute(comparison: Comparison, run: Run, version: int, info: dict[str, str]) -> Record:
    """Run one fit + test in its own process; a crash is recorded (`compare.json`, status failed), not raised."""
    version_dir = comparison.log_dir / run.name / f"version_{version}"
    fit_args = comparison.fit_args(run)
    command = [sys.executable, "-m", "nlparena.compare.worker", "--save_dir", str(comparison.log_dir)]
    command += ["--name", run.name, "--version", str(version), "--", *fit_args]
    with subprocess.Popen(command, stderr=subprocess.PIPE) as proc:
        tail = _tee_stderr(proc)
    marker = version_dir / MARKER
    if proc.returncode == 0 and marker.is_file():
        return Record(run.name, "finished", version_dir, json.loads(marker.read_text()))
    last = tail[-1] if tail else "no error output"
    if proc.returncode == 0:
        last = f"exited without writing {MARKER}"
    data = {
        "status": "failed",
        "run": run.name,
        **info,
        "exit_code": proc.returncode,
        "error": last if len(last) <= ERROR_CHARS else last[: ERROR_CHARS - 1] + "…",
        "stderr_tail": list(tail),
        "settings": run_settings(fit_args),
    }
    # kept in the run's version folder (made if the run died before its logger made it), so that the next
    # invocation and `--report-only` list the failure
    version_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(data, indent=2) + "\n")
    return Record(run.name, "failed", version_dir, data)


def _outcome(record: Record, seconds: float | None = None) -> str:
    """`finished in 183 s, best val/exact_match 0.912` or `failed (exit 1): <last stderr line>`."""
    if record.status != "finished":
        return f"failed (exit {record.data.get('exit_code')}): {record.data.get('error')}"
    metric = record.data.get("headline_metric", "")
    best = best_value(record)
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    return f"finished{took}, best {metric} {'n/a' if best is None else f'{best:.3f}'}"


def run_all(comparison: Comparison, force: bool, infos: dict[str, dict[str, str]]) -> list[Record]:
    """Run (or skip) every run in order, one line before and after each; returns the attempt each ran or kept.
    `infos` is what `check_runs` found of each run."""
    records = []
    total = len(comparison.runs)
    for i, run in enumerate(comparison.runs, start=1):
        prefix = f"[{i}/{total}] {run.name}:"
        run_dir = comparison.log_dir / run.name
        settings = run_settings(comparison.fit_args(run))
        done = [r for r in attempts(run_dir) if r.status == "finished" and r.data.get("settings") == settings]
        if done and not force:
            print(f"{prefix} skipped (finished in {done[-1].version_dir.name})", flush=True)
            records.append(done[-1])
            continue
        version = next_version(run_dir)
        print(f"{prefix} running ({run_dir / f'version_{version}'})", flush=True)
        start = time.perf_counter()
        record = execute(comparison, run, version, infos[run.name])
        print(f"{prefix} {_outcome(record, time.perf_counter() - start)}", flush=True)
        # the report shows the newest finished attempt (an earlier one if this --force attempt failed)
        records.append(newest(attempts(run_dir), settings) or record)
    return records


def logged_records(comparison: Comparison) -> list[Record]:
    """For `--report-only`: each run's attempt to report, from its logs; ConfigError if no run has any."""
    records = []
    for run in comparison.runs:
        found = newest(attempts(comparison.log_dir / run.name), run_settings(comparison.fit_args(run)))
        records.append(found or Record(run.name, "not run"))
    if all(record.status == "not run" for record in records):
        raise ConfigError(
            f"--report-only: no run of {comparison.source} has logs under {comparison.log_dir}; "
            f"run `nlparena compare -c {comparison.source}` first"
        )
    return records


def compare(args: list[str]) -> Path:
    """`nlparena compare`: check the config and every run, run what is not finished, write the report."""
    parser = OneLineArgumentParser(
        prog="nlparena compare",
        description="Run the configs of a comparison (each like `nlparena fit` then `test`, in its own process) "
        "and write logs/compare/NAME/report.md, results.csv and figures/.",
    )
    parser.add_argument("-c", "--config", required=True, type=Path, help="compare config (configs/compare/*.yaml)")
    parser.add_argument("--force", action="store_true", help="run finished runs again (in a new version folder)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from existing logs only")
    opts = parser.parse_args(args)
    if opts.force and opts.report_only:
        raise ConfigError("--force and --report-only: choose one (--report-only runs nothing)")
    comparison = load_comparison(opts.config)
    if opts.report_only:
        records = logged_records(comparison)
        report = write_report(comparison, records)
    else:
        infos = check_runs(comparison)  # every run's settings, before anything is written
        with one_comparison_at_a_time(comparison):
            records = run_all(comparison, opts.force, infos)
            report = write_report(comparison, records)
    failed = [record.run for record in records if record.status == "failed"]
    print(f"report: {report}" + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else ""), flush=True)
    if failed and not opts.report_only:
        raise SystemExit(1)  # the report is written; the exit status says that a run of this invocation failed
    return report


@contextmanager
def one_comparison_at_a_time(comparison: Comparison) -> Iterator[None]:
    """Hold `logs/compare/NAME/.lock` while running and reporting: a second `nlparena compare` of the same
    comparison would pick the same version folders and mark this one's runs failed, so it is refused in one line."""
    comparison.log_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(comparison.log_dir / ".lock", blocking=False)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(
            f"{comparison.log_dir} is in use by another `nlparena compare` of {comparison.source}; "
            "run it again when that one has finished"
        ) from None
    try:
        yield
    finally:
        lock.release()
