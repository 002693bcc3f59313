"""A comparison's report reads itself: a plain summary at the top, the two tests' disagreement explained, the
metrics named, bounded intervals kept in their range, a warning for few seeds, a run at chance level flagged, and
every column explained below its table. The reports are built by `nlparena compare --report-only` from synthetic
logs (event files, `compare.json`, `test_outputs.csv`): no training."""

from __future__ import annotations

import csv
import itertools
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from nlparena.compare.statistics import macro_f1
from tests.conftest import run_cli

EXAMPLES = 200  # test examples per seed
# test exact match per run and seed. transformer against seq2seq: with 2 seeds, the paired bootstrap sees a gap
# that Welch's test over 2 seeds cannot confirm; with 5, both see it, and lstm (seeds far apart) is the run on
# which they disagree. broken learned nothing.
TWO_SEEDS = {"transformer": [0.55, 0.70], "seq2seq": [0.50, 0.52], "broken": [0.0, 0.0]}
FIVE_SEEDS = {
    "transformer": [0.80, 0.82, 0.79, 0.81, 0.83],
    "lstm": [0.40, 0.75, 0.45, 0.80, 0.55],
    "seq2seq": [0.50, 0.52, 0.49, 0.51, 0.50],
    "broken": [0.0, 0.0, 0.0, 0.0, 0.01],
}
DISAGREES = {2: "transformer", 5: "lstm"}  # the run whose two tests disagree
BOUNDED = ("exact_match", "token_accuracy", "bleu")  # metrics in [0, 1], in a header (or a per-length title)


def write_trial(folder: Path, run: str, seed: int, exact: float) -> None:
    """A finished trial's version folder as a compare worker leaves it."""
    folder.mkdir(parents=True)
    writer = SummaryWriter(str(folder))
    for step, epoch, value in ((9, 0, exact / 2), (19, 1, min(1.0, exact + 0.02))):
        writer.add_scalar("epoch", epoch, step)
        writer.add_scalar("val/exact_match", value, step)
    test = {
        "test/exact_match": exact,
        "test/token_accuracy": 0.4 + exact / 2,
        "test/bleu": 0.9 * exact,
        "test/loss": 2.0 - exact,
        "test/exact_match_by_length/03-04": min(1.0, exact + 0.1),
        "test/exact_match_by_length/05-06": max(0.0, exact - 0.1),
        "compare/fit_seconds": 3.0 + seed,
        "compare/samples_per_second": 400.0 + 10 * seed,
        "compare/tokens_per_second": 2800.0 + 70 * seed,
    }
    writer.add_scalar("compare/parameters", 12345, 0)
    for tag, value in test.items():
        writer.add_scalar(tag, value, 19)
    writer.close()
    marker = {"status": "finished", "run": run, "seed": seed, "model": "Transformer", "fit_seconds": 3.0 + seed}
    marker |= {"headline_metric": "val/exact_match", "headline_mode": "max"}
    (folder / "compare.json").write_text(json.dumps(marker))
    right = round(exact * EXAMPLES)
    with (folder / "test_outputs.csv").open("w", newline="") as file:
        rows = csv.writer(file)
        rows.writerow(["index", "source", "reference", "output", "correct"])
        rows.writerows([i, "a b", "b a", "b a" if i < right else "a a", int(i < right)] for i in range(EXAMPLES))


def build_report(values: dict[str, list[float]]) -> str:
    """`nlparena compare --report-only` over synthetic logs of `values` (run -> test exact match per seed)."""
    seeds = list(range(len(next(iter(values.values())))))
    name = f"seeds{len(seeds)}"
    runs = [{"name": run} for run in values]
    config = {"name": name, "seeds": seeds, "baseline": "seq2seq", "target": 0.6, "runs": runs}
    Path(f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for run, exact in values.items():
        for seed, value in zip(seeds, exact, strict=True):
            write_trial(Path("logs/compare", name, run, f"seed_{seed}", "version_0"), run, seed, value)
    run_cli("compare", "-c", f"{name}.yaml", "--report-only")
    return Path("logs/compare", name, "report.md").read_text()


@pytest.fixture(scope="module", params=[2, 5], ids=["2 seeds", "5 seeds"])
def report(request, tmp_path_factory) -> tuple[int, str]:
    """The number of seeds and the report of a comparison with that many."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp(f"seeds{request.param}"))
        return request.param, build_report(TWO_SEEDS if request.param == 2 else FIVE_SEEDS)


def top(text: str) -> str:
    """What comes before the first table."""
    return text.split("\n|", 1)[0]


def summary_line(text: str, run: str) -> str:
    """The run's line in the summary at the top."""
    summary = top(text).split("## In short", 1)[-1].split("\n## ", 1)[0]
    (line,) = [line for line in summary.splitlines() if line.startswith(f"- `{run}`")]
    return line


def test_the_report_opens_with_a_plain_summary_of_each_run_against_the_baseline(report):
    seeds, text = report
    assert "## In short" in top(text)
    assert top(text).index("## In short") < top(text).index("## Setup")
    agreed = summary_line(text, "transformer" if seeds == 5 else "broken")
    assert "than `seq2seq` on `test/exact_match` by " in agreed and "both tests agree" in agreed, agreed
    if seeds == 5:
        assert agreed.startswith("- `transformer`: better than `seq2seq` on `test/exact_match` by 0.306 ")


def test_a_disagreement_between_the_two_tests_says_what_each_measures(report):
    seeds, text = report
    line = summary_line(text, DISAGREES[seeds])
    assert "the test examples show a difference" in line and "but the seeds do not" in line, line
    explained = " ".join(top(text).split())
    assert "whether these trained models differ on these test examples" in explained
    assert "whether training again with other seeds would reproduce the gap" in explained
    assert "a claim about the architecture needs the seed-level test too" in explained


def test_the_headline_line_names_the_validation_metric_and_the_test_metric_of_the_verdicts(report):
    _, text = report
    (line,) = [line for line in top(text).splitlines() if "`val/exact_match`" in line]
    assert "each trial is tested at its checkpoint with the best `val/exact_match`" in line
    assert "verdicts compare `test/exact_match`" in line


def tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Every markdown table: the section title above it, its headers and its rows of cells."""
    found, title, lines = [], "", text.splitlines()
    for i, line in enumerate(lines):
        title = line if line.startswith("## ") else title
        if line.startswith("|") and not lines[i - 1].startswith("|"):
            block = list(itertools.takewhile(lambda row: row.startswith("|"), lines[i:]))
            cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in block]
            found.append((title, cells[0], cells[2:]))
    return found


def interval_ends(cell: str) -> list[float]:
    """Every number a cell shows of a value's spread: `m ± h` as m - h and m + h, and every bound it writes."""
    numbers = [float(n) for n in re.findall(r"[-+]?\d+\.\d+", cell)]
    if "±" in cell:
        mean, half = (float(n) for n in re.findall(r"([-+]?\d+\.\d+) ± (\d+\.\d+)", cell)[0])
        numbers += [mean - half, mean + half]
    return numbers


def test_no_interval_of_a_metric_bounded_to_0_1_leaves_its_range(report):
    _, text = report
    checked = 0
    for title, headers, rows in tables(text):
        for column, header in enumerate(headers):
            per_length = "by source length" in title and header != "run"
            if not per_length and not any(name in header for name in BOUNDED):
                continue
            for row in rows:
                ends = interval_ends(row[column])
                checked += len(ends)
                assert all(0 <= end <= 1 for end in ends), (title, header, row[column])
    assert checked > 50
    assert "clipped to [0, 1]" in text


def test_fewer_than_three_seeds_give_a_warning_at_the_top(report):
    seeds, text = report
    warned = "Only 2 seeds per run" in top(text)
    assert warned == (seeds == 2)
    if warned:
        assert "little power" in top(text)


def test_a_run_at_chance_level_is_flagged(report):
    _, text = report
    line = summary_line(text, "broken")
    assert "at chance level" in line, line
    assert all("at chance level" not in summary_line(text, run) for run in ("transformer", "seq2seq"))
    results = text.split("## Results")[1].split("\n## ")[0]
    (row,) = [line for line in results.splitlines() if line.startswith("| `broken` |")]
    headers = next(line for line in results.splitlines() if line.startswith("| run |")).split(" | ")
    assert "⚠ at chance level" in row.split(" | ")[headers.index("test/exact_match")]  # on its test/exact_match


def test_every_column_is_explained_once_below_its_table(report):
    _, text = report
    lines, explained, counts = text.splitlines(), set(), {}
    for line in lines:
        if line.startswith("- `") and ": " in line:
            for name in re.findall(r"`([^`]+)`", line.split(": ", 1)[0]):
                counts[name] = counts.get(name, 0) + 1
    for title, headers, _ in tables(text):
        start = lines.index("| " + " | ".join(headers) + " |", lines.index(title))
        below = []
        for line in lines[start:]:
            if below and (line.startswith("|") or line.startswith("## ")):
                break
            if not line.startswith("|"):
                below.append(line)
        for line in below:
            if line.startswith("- `") and ": " in line:
                explained |= set(re.findall(r"`([^`]+)`", line.split(": ", 1)[0]))
        missing = [header for header in headers if header and header not in explained]
        assert not missing, (title, missing)
    twice = {name: n for name, n in counts.items() if n > 1 and name in {h for _, hs, _ in tables(text) for h in hs}}
    assert not twice, twice
    fit = next(line for line in lines if line.startswith("- `fit (s)`: "))
    assert "not" in fit and "start" in fit and "test" in fit  # what it leaves out: the terminal's time counts more
    assert "0-1 scale" in next(line for line in lines if line.startswith("- `test/bleu`: "))


def test_the_chance_level_of_a_classifier_is_the_better_of_two_guessers_that_learned_nothing():
    from nlparena.compare.chance import chance_level

    counts = torch.tensor([[50, 5, 5], [10, 10, 0], [15, 0, 5]])  # true class down: 60, 20, 20 examples
    references = torch.repeat_interleave(torch.arange(3), counts.sum(1))
    majority = macro_f1(torch.zeros_like(references).numpy(), references.numpy(), num_classes=3)
    assert chance_level("test/accuracy", counts) == pytest.approx(0.6)  # always the most frequent class
    assert majority == pytest.approx((2 * 60 / 160) / 3)
    uniform = sum(2 * share / (3 * share + 1) for share in (0.6, 0.2, 0.2)) / 3  # a class at random: F1 per class
    assert chance_level("test/macro_f1", counts) == pytest.approx(max(majority, uniform))
    assert chance_level("test/exact_match", None) == 0.0
    assert chance_level("test/macro_f1", None) is None  # without the test's class counts: unknown
