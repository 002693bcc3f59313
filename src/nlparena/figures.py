"""matplotlib figures shared by the callbacks (TensorBoard, PNG files) and the reports: attention maps, confusion
matrices, learning-rate curves. Pure drawing: tensors and strings in, a `Figure` out (no pyplot, no global state).

matplotlib is imported inside each function: it costs start-up time to the runs that draw nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


CELL_INCHES = 0.42  # an attention map's token: room for a 10-pt token label beside its neighbours
MIN_MAP_INCHES = (6.0, 4.0)  # a short sentence's map still shows its title and colour bar in full


def attention_figure(weights: torch.Tensor, source: list[str], output: list[str], title: str) -> Figure:
    """Heatmap of weights (T, S): source tokens across, output tokens down; a cell of `CELL_INCHES` per token, so
    that a 24-token sentence's labels are readable, and the title above the whole figure, where the colour bar
    beside the map cannot cover it."""
    from matplotlib.figure import Figure

    T, S = weights.shape
    width = max(MIN_MAP_INCHES[0], 2.5 + CELL_INCHES * S)  # + the output labels and the colour bar
    height = max(MIN_MAP_INCHES[1], 2.0 + CELL_INCHES * T)  # + the source labels and the title
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
    ax.set_xticks(range(S), source, rotation=90)
    ax.set_yticks(range(T), output)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.suptitle(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="attention weight")
    return fig


def confusion_figure(counts: torch.Tensor, class_names: list[str], title: str) -> Figure:
    """Counts (C, C), true class down and predicted across, beside the same rows normalised to sum to 1."""
    from matplotlib.figure import Figure

    C = counts.shape[0]
    fig = Figure(figsize=(4.0 + 2.2 * C, 1.5 + 0.9 * C), layout="constrained")
    for ax, values, name, fmt in zip(
        fig.subplots(1, 2),
        (counts, row_rates(counts)),
        ("counts", "normalised by true class"),
        ("{:.0f}", "{:.2f}"),
        strict=True,
    ):
        draw_matrix(fig, ax, values, class_names, name, fmt)
    fig.suptitle(title, fontsize=10)
    return fig


def row_rates(counts: torch.Tensor) -> torch.Tensor:
    """Counts (C, C) as the share of each true class (rows sum to 1; an empty row stays 0)."""
    return counts / counts.sum(1, keepdim=True).clamp(min=1)


def draw_matrix(fig: Figure, ax: Any, values: torch.Tensor, class_names: list[str], title: str, fmt: str) -> None:
    """One confusion-matrix panel on `ax`: values (C, C) as colours and numbers, true class down, predicted across."""
    C = values.shape[0]
    image = ax.imshow(values.numpy(), cmap="Blues", vmin=0)
    for i in range(C):
        for j in range(C):
            dark = values[i, j] > 0.5 * values.max()
            ax.text(j, i, fmt.format(float(values[i, j])), ha="center", va="center", color="w" if dark else "k")
    ax.set_xticks(range(C), class_names, rotation=45, ha="right")
    ax.set_yticks(range(C), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)


def lr_curve_figure(lrs: list[list[float]], title: str) -> Figure:
    """The lr of each param group (columns of `lrs`) against the optimizer step (rows)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.add_subplot()
    steps = range(len(lrs))
    for group in range(len(lrs[0])):
        ax.plot(steps, [lr[group] for lr in lrs], label=f"param group {group}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=9)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    if len(lrs[0]) > 1:
        ax.legend()
    return fig
