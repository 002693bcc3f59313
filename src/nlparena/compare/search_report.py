"""The search's part of a comparison's report: per run, its trials finished / pruned / failed, its best validation value
and setting (the one its seeds trained with), the importance of each key where Optuna can compute it, and Optuna's
optimisation history figure; `search.csv` holds every trial. Optuna is imported here only for its figure and its
importance evaluator (the studies come from `search.py`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from nlparena.compare.config import Comparison
from nlparena.compare.sections import Tables, table
from nlparena.compare.values import cli_value

STATES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def trial_rows(name: str, study: Any) -> list[dict[str, Any]]:
    """search.csv's rows of one run: every trial its study has (but those asked beyond the budget and never run)."""
    rows = []
    for trial in study.study.get_trials(deepcopy=False):
        if trial.user_attrs.get("unused"):
            continue
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        rows.append(
            {
                "run": name,
                "trial": trial.number,
                "state": STATES.get(trial.state.name, trial.state.name.lower()),
                "value": trial.value,
                **{key: trial.params.get(key) for key, _ in study.space},
                "validations": len(trial.intermediate_values),
                "seconds": seconds,
                "host": trial.user_attrs.get("host"),
                "log_dir": trial.user_attrs.get("log_dir"),
                "error": trial.user_attrs.get("error"),
            }
        )
    return rows


def importance(study: Any) -> str:
    """`lr 0.81, dropout 0.19` (Optuna's fANOVA importance), or why there is none."""
    import optuna

    if len(study.trials_in("COMPLETE")) < 2 or len(study.space) < 2:
        return "n/a (needs 2 finished trials and 2 keys)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study.study, params=[key for key, _ in study.space])
    except (RuntimeError, ValueError) as err:  # too few distinct values: Optuna says why
        return f"n/a ({str(err).splitlines()[0][:80]})"
    return ", ".join(f"{key.rsplit('.', 1)[-1]} {value:.2f}" for key, value in found.items())


def history_figure(name: str, study: Any, folder: Path) -> Path | None:
    """Optuna's optimisation history of the run's study (each finished trial's value, the best so far)."""
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history

    if not study.trials_in("COMPLETE"):
        return None
    path = folder / "figures" / f"search_{name.replace('/', '_')}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Optuna sets its own style (plt.style.use): kept to this figure, not the report's others drawn after it
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # Optuna's matplotlib figures are marked experimental
        axes = plot_optimization_history(study.study)
        axes.set_title(f"{name}: search history")
        axes.figure.set_size_inches(7, 4)
        axes.figure.tight_layout()
        axes.figure.savefig(path, dpi=120)
        plt.close(axes.figure)
    return path


def setting_text(setting: tuple[tuple[str, Any], ...] | None) -> str:
    return ", ".join(f"`{key}={cli_value(value)}`" for key, value in setting) if setting else "none"


def search_section(
    comparison: Comparison, studies: dict[str, Any], tables: Tables, folder: Path
) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's lines of the search (a history figure per run written into `folder`) and search.csv's rows."""
    search = comparison.search
    assert search is not None
    per_run = {name: trial_rows(name, study) for name, study in studies.items()}
    rows = [row for run_rows in per_run.values() for row in run_rows]
    keys = list(dict.fromkeys(key for study in studies.values() for key, _ in study.space))  # every run's keys
    rows = [{**{key: row.get(key) for key in ("run", "trial", "state", "value", *keys)}, **row} for row in rows]
    metric = tables.metric
    body, figures = [], []
    for name, study in studies.items():
        counts = {state: sum(row["state"] == state for row in per_run[name]) for state in STATES.values()}
        best = study.best_value()
        body.append(
            [
                f"`{name}`",
                str(study.budget),
                *(str(counts[state]) for state in ("finished", "pruned", "failed")),
                "–" if best is None else f"{best:.4f}",
                setting_text(comparison.chosen.get(name)),
                importance(study),
            ]
        )
        figures.append(history_figure(name, study, folder))
    extra = f" and the search's own args {' '.join(f'`{a}`' for a in search.args)}" if search.args else ""
    if search.prune_after and search.pruner != "none":
        extra += f", never pruned before it had {search.prune_after} validations"
    lines = [
        "",
        "## Search",
        "",
        f"Every run had the same budget: {search.trials or 'the grid'} trials (sampler `{search.sampler}`, pruner "
        f"`{search.pruner}`, sampler seed {search.seed}, or one per process for a study shared through `--storage`), "
        f"each a fit with a sampled setting{extra}, judged by its "
        f"best `{metric}` on validation only; the trials trained with seeds of their own, never the comparison's. "
        "Each run's best setting then trained with the comparison's seeds, whose test results are above. Every "
        "trial is in `search.csv`.",
        "",
        *table(
            ["run", "budget", "finished", "pruned", "failed", f"best {metric}", "chosen setting", "importance"], body
        ),
        "",
        "budget: the trials the run's search counts (finished and pruned); failed trials are sampled again. "
        "importance: Optuna's fANOVA importance of each key for the validation value.",
    ]
    for name, path in zip(studies, figures, strict=True):
        if path is not None:
            lines += [
                "",
                f"![search {name}](figures/{path.name})",
                "",
                f"`{name}`: each finished trial's best `{metric}` and the best so far, by trial number.",
            ]
    return lines, rows
