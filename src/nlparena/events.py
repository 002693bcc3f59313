"""The one reader of TensorBoard event files (the comparison report and the tests use it), and the text form of a
confusion matrix that the ConfusionMatrices callback writes and the report reads back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class RunEvents:
    """What one run folder's event files hold, by tag; every event, in the order written.

    `texts` are keyed as logged (`val/samples`, not TensorBoard's `val/samples/text_summary`); `images` hold the step
    of each image; `hparams` is the HPARAMS plugin's content (`_hparams_/experiment`, `..._session_start_info`).
    """

    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    texts: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    images: dict[str, list[int]] = field(default_factory=dict)
    hparams: dict[str, bytes] = field(default_factory=dict)

    def last(self, tag: str) -> float | None:
        """The last value of a scalar, None if it was never logged."""
        series = self.scalars.get(tag)
        return series[-1][1] if series else None

    def values(self, tag: str) -> list[float]:
        """Every value of a scalar, in the order logged."""
        return [value for _, value in self.scalars.get(tag, [])]

    def confusion(self, stage: str) -> tuple[list[str], torch.Tensor] | None:
        """The last confusion matrix of `stage` (`val`, `test`): class names and counts (C, C), true class down."""
        tables = self.texts.get(f"{stage}/confusion_matrix_counts")
        return parse_counts_table(tables[-1][1]) if tables else None


TEXT_SUFFIX = "/text_summary"  # TensorBoard stores a text logged as `tag` under `tag/text_summary`


def read_events(run_dir: str | Path | None) -> RunEvents:
    """Every scalar, text, image step and HPARAMS record of a run folder's event files (all of them: `test` reopens
    the writer); empty if the folder does not exist."""
    if run_dir is None or not Path(run_dir).is_dir():
        return RunEvents()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 keeps every event (the default samples long series); purging is off because the test
    # metrics are logged at the last training step, which must not read as a restarted run
    acc = EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "tensors": 0, "images": 0}, purge_orphaned_data=False
    )
    acc.Reload()
    tags = acc.Tags()
    return RunEvents(
        scalars={tag: [(event.step, event.value) for event in acc.Scalars(tag)] for tag in tags["scalars"]},
        texts={
            tag.removesuffix(TEXT_SUFFIX): [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(tag)]
            for tag in tags["tensors"]
            if tag.endswith(TEXT_SUFFIX)
        },
        images={tag: [event.step for event in acc.Images(tag)] for tag in tags["images"]},
        hparams=_plugin_content(acc, "hparams"),
    )


def _plugin_content(acc: Any, plugin: str) -> dict[str, bytes]:
    """tag -> content of a plugin's summaries; empty when the run wrote none (EventAccumulator raises KeyError)."""
    try:
        return dict(acc.PluginTagToContent(plugin))
    except KeyError:
        return {}


def counts_table(counts: torch.Tensor, class_names: list[str]) -> str:
    """The confusion matrix as a markdown table (TensorBoard text): rows true, columns predicted."""
    rows = ["| true \\ predicted | " + " | ".join(class_names) + " |", "|---" * (len(class_names) + 1) + "|"]
    for name, row in zip(class_names, counts.long().tolist(), strict=True):
        rows.append(f"| {name} | " + " | ".join(str(n) for n in row) + " |")
    return "\n".join(rows)


def parse_counts_table(text: str) -> tuple[list[str], torch.Tensor]:
    """The class names and counts (C, C) of a `counts_table` read back from TensorBoard."""
    header, _, *rows = text.strip().splitlines()
    names = [cell.strip() for cell in header.strip("|").split("|")[1:]]
    counts = [[int(cell) for cell in row.strip("|").split("|")[1:]] for row in rows]
    return names, torch.tensor(counts)
