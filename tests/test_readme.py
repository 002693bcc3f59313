"""The README's claims that come from measurements quote the figures the benchmarks printed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gpu_paragraph() -> str:
    """The README's bullet on GPUs, from `- **GPU.**` to the next bullet."""
    text = (ROOT / "README.md").read_text()
    start = text.index("- **GPU.**")
    return text[start : text.index("\n- ", start)]


def test_readme_gpu_paragraph_quotes_the_measured_figures():
    paragraph = gpu_paragraph()
    assert "not been measured" not in paragraph
    benchmarks = (ROOT / "benchmarks" / "README.md").read_text()
    times = re.findall(r"(\d+\.\d+) ms", paragraph)
    assert len(times) >= 4, paragraph
    for figure in times:
        assert figure in benchmarks, f"{figure} ms is not in benchmarks/README.md"
