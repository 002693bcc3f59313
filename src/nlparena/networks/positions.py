"""Positional encodings. Absolute ones (sinusoidal, learned) add a vector per position to the embeddings; the others
act inside self-attention through one interface, `AttentionPositions`: rotate queries and keys, add a bias to the
scores.

Shapes: T query length, S key length, D model width, H heads, Dh = D / H, L a table's length.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nlparena.errors import ConfigError


def check_length(length: int, table_size: int) -> None:
    if length > table_size:
        raise ConfigError(f"sequence length {length} is beyond the positional table (model.max_len={table_size})")


class SinusoidalPositions(nn.Module):
    """Fixed sin/cos encodings (Vaswani et al. 2017): position p gets its own vector."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)  # (L, 1)
        freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10_000.0) / d_model))  # (D/2,)
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(pos * freq)
        table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
        self.register_buffer("table", table, persistent=False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        """Encodings of positions offset .. offset + length - 1: (length, D)."""
        check_length(offset + length, self.table.shape[0])
        return self.table[offset : offset + length]


class LearnedPositions(nn.Module):
    """A trained vector per position (BERT, GPT)."""

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_len, d_model)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        check_length(offset + length, self.table.num_embeddings)
        return self.table.weight[offset : offset + length]


class AttentionPositions(nn.Module):
    """How positions act inside self-attention: queries and keys are rotated, and a bias is added to the scores.

    This base does neither. It is what attention sees when positions are added to the embeddings instead, and it is
    NoPE (no positional encoding). Queries sit at positions offset.., keys at 0.. (a cached key was rotated at its
    own position when it was computed).
    """

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__()

    def rotate(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Queries or keys x (B, H, T, Dh) at positions offset.. as attention scores them: here x itself."""
        return x

    def bias(self, queries: int, keys: int, offset: int, causal: bool) -> torch.Tensor | None:
        """(H, T, S) float to add to the scores of queries at offset.. against keys at 0.., with -inf for keys after
        the query if causal; None (here) for no bias, so that SDPA can run its kernels without a mask."""
        return None


def key_distances(queries: int, keys: int, offset: int, device: torch.device) -> torch.Tensor:
    """(T, S) i - j for queries i at offset.. and keys j at 0.."""
    return torch.arange(offset, offset + queries, device=device)[:, None] - torch.arange(keys, device=device)[None, :]


class ALiBi(AttentionPositions):
    """Attention with linear biases (Press et al. 2022, "Train Short, Test Long"): no position vectors; head h adds
    -m_h * distance to its attention scores, with slopes m_h = 2^(-8 h / H), h = 1..H (the paper's geometric
    sequence). The bias depends on the distance between query and key only, so nothing is tied to an absolute
    position the training data may not have had."""

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__(n_heads, head_dim)
        slopes = torch.tensor([2.0 ** (-8.0 * h / n_heads) for h in range(1, n_heads + 1)])
        self.register_buffer("slopes", slopes.view(n_heads, 1, 1), persistent=False)

    def bias(self, queries: int, keys: int, offset: int, causal: bool) -> torch.Tensor:
        """(H, T, S): -m_h |i - j|, with -inf for keys after the query if causal."""
        distance = key_distances(queries, keys, offset, self.slopes.device)  # (T, S)
        bias = -self.slopes * distance.abs().to(self.slopes.dtype)
        return bias.masked_fill(distance < 0, float("-inf")) if causal else bias


class Rotary(AttentionPositions):
    """Rotary position embedding (Su et al. 2021, RoFormer): queries and keys are rotated, pair of dimensions by pair,
    by angles proportional to their position, so that a query-key dot product depends on their offset only.

    cos and sin of the angles are computed once per device and dtype for the longest length asked so far (at least 64,
    rounded up to a power of two, so that step-by-step decoding does not recompute them at each step) and sliced."""

    def __init__(self, n_heads: int, head_dim: int, base: float = 10_000.0) -> None:
        super().__init__(n_heads, head_dim)
        if head_dim % 2:
            raise ConfigError(f"rope positions need an even head width; d_model / n_heads is {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (Dh/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.cached: dict[tuple[torch.device, torch.dtype, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def cos_sin(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles of positions 0 .. at least length - 1, each (L, Dh/2) in dtype."""
        key = (device, dtype, self.inv_freq.dtype)
        compiling = torch.compiler.is_compiling()  # a compiled graph computes them itself, without Python state
        cos, sin = (None, None) if compiling else self.cached.get(key, (None, None))
        if cos is None or cos.shape[0] < length:
            size = max(64, 1 << (length - 1).bit_length())  # a power of two >= length
            inv_freq = self.inv_freq.to(device)
            angles = torch.arange(size, device=device).to(inv_freq.dtype)[:, None] * inv_freq[None, :]  # (L, Dh/2)
            cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
            if not compiling:
                self.cached[key] = (cos, sin)
        return cos, sin

    def rotate(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x (B, H, T, Dh) at positions offset.. -> x rotated, the same shape and dtype."""
        cos, sin = self.cos_sin(offset + x.shape[2], x.device, x.dtype)
        cos, sin = cos[offset : offset + x.shape[2]], sin[offset : offset + x.shape[2]]  # (T, Dh/2)
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


ABSOLUTE_POSITIONS = {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}
ATTENTION_POSITIONS = {"alibi": ALiBi, "rope": Rotary}
POSITION_CHOICES = [*ABSOLUTE_POSITIONS, *ATTENTION_POSITIONS]


def attention_positions(positions: str | None, n_heads: int, head_dim: int) -> AttentionPositions:
    """What self-attention does with `positions`: ALiBi or RoPE inside it; nothing for the absolute encodings, which
    the embeddings add, nor for None."""
    return ATTENTION_POSITIONS.get(positions, AttentionPositions)(n_heads, head_dim)
