"""The attention map is readable: a 24-token sentence's labels do not overlap, a short sentence's map is not a
thumbnail, and the colour bar never covers the title."""

from __future__ import annotations

import itertools

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from nlparena.figures import attention_figure

DPI = 120  # what the AttentionMaps callback saves its PNG files with


def drawn(tokens: int, title: str = "Seq2SeqAttention, test example 0"):
    words = [f"word{i}" for i in range(tokens)]
    fig = attention_figure(torch.rand(tokens, tokens).softmax(-1), words, words, title)
    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)  # the renderer savefig uses
    canvas.draw()  # constrained layout places everything
    return fig, canvas.get_renderer()


def test_the_colour_bar_never_covers_the_title_and_both_are_inside_the_figure():
    for tokens in (3, 5, 24):
        fig, renderer = drawn(tokens)
        (ax, colorbar) = fig.axes
        title = (fig._suptitle or ax.title).get_window_extent(renderer)
        assert not title.overlaps(colorbar.get_tightbbox(renderer)), tokens
        whole = fig.bbox
        assert whole.x0 <= title.x0 and title.x1 <= whole.x1 and title.y1 <= whole.y1, tokens


def test_a_map_is_readable_from_a_3_token_to_a_24_token_sentence():
    fig, _ = drawn(3)
    assert fig.bbox.width >= 600 and fig.bbox.height >= 400  # pixels; a 3-token map was 271 wide
    fig, renderer = drawn(24)
    ax = fig.axes[0]
    for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
        boxes = [label.get_window_extent(renderer) for label in labels]
        assert len(boxes) == 24
        assert not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))  # neighbours apart
        assert all(label.get_fontsize() >= 8 for label in labels)
    assert fig.bbox.width >= 24 * 40  # pixels: about 50 per token at the saved resolution
