"""Positional encodings. Absolute ones (sinusoidal, learned) add a vector per position to the embeddings; the others
act inside self-attention through one interface, `AttentionPositions`: rotate queries and keys (RoPE), add a bias to
the scores (ALiBi, T5's), or neither (NoPE, `none`). A stack builds one `attention_positions` module and gives that
instance to each of its layers (T5 shares its bias across a stack's layers so).

Shapes: T query length, S key length, D model width, H heads, Dh = D / H, L a table's length.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from nlparena.errors import ConfigError

Positions = Literal["sinusoidal", "learned", "alibi", "rope", "t5", "none"]
"""The positional encodings every config chooses from (`POSITION_CHOICES`, in this order)."""
POSITION_CHOICES: list[str] = list(get_args(Positions))


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
        the query if causal; None (here) for no bias, so that SDPA can run its kernels without a mask. `causal` is the
        attention's direction, also in a cached decoding step, where no key lies after the query: a bias may differ
        by it for keys before the query too (T5's buckets)."""
        return None


def key_distances(queries: int, keys: int, offset: int, device: torch.device) -> torch.Tensor:
    """(T, S) i - j for queries i at offset.. and keys j at 0.."""
    return torch.arange(offset, offset + queries, device=device)[:, None] - torch.arange(keys, device=device)[None, :]


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's slopes for n_heads heads (Press et al. 2022): the geometric sequence m_h = 2^(-8 h / n_heads),
    h = 1..n_heads; (n_heads,)."""
    return torch.tensor([2.0 ** (-8.0 * h / n_heads) for h in range(1, n_heads + 1)])


class ALiBi(AttentionPositions):
    """Attention with linear biases (Press et al. 2022, "Train Short, Test Long"): no position vectors; head h adds
    -m_h (i - j) to the score of query i for a key j to its left, with the paper's geometric slopes m_h = 2^(-8 h / H),
    h = 1..H. The bias depends on the offset between query and key only, so nothing is tied to an absolute position
    the training data may not have had. In causal attention this is exactly the paper's.

    Bidirectional attention (an encoder) also sees keys to the right: there the first ceil(H / 2) heads look left only
    and the others right only (keys on the other side masked), each half with the paper's slopes for its number of
    heads, so that each direction has the paper's whole range (2^(-16 / H) .. 2^(-8) for even H): causal ALiBi run
    forwards and backwards, as a bidirectional RNN's two directions. This is the limit of separate slopes for keys to
    the left and to the right (infinite on one side). A symmetric bias, -m_h |i - j|, carries no direction: the encoder
    of a reversed source gives the reversed states, and cross-attention reads them as a set, so a decoder cannot tell a
    source from its reverse (0.03-0.04 validation exact match on Copy and Reverse). Finite slopes on both sides, the
    paper's on the left and the same in reversed head order on the right, tell directions apart only weakly (Reverse,
    validation exact match after 12 epochs at lr 3e-3, seed 0: 0.70, against 0.91 with one-sided halves). With H = 1 the
    one head looks left: the encoder is then causal.
    """

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__(n_heads, head_dim)
        left = (n_heads + 1) // 2
        halves = torch.cat([alibi_slopes(left), alibi_slopes(n_heads - left)])
        self.register_buffer("slopes", alibi_slopes(n_heads).view(n_heads, 1, 1), persistent=False)  # causal
        self.register_buffer("half_slopes", halves.view(n_heads, 1, 1), persistent=False)  # bidirectional
        self.register_buffer("looks_left", (torch.arange(n_heads) < left).view(n_heads, 1, 1), persistent=False)

    def bias(self, queries: int, keys: int, offset: int, causal: bool) -> torch.Tensor:
        """(H, T, S): -m_h |i - j|, -inf for keys right of the query if causal; else each half's slopes, -inf for keys
        on the side a head does not look to."""
        distance = key_distances(queries, keys, offset, self.slopes.device).to(self.slopes.dtype)  # (T, S) i - j
        if causal:
            return (-self.slopes * distance).masked_fill(distance < 0, float("-inf"))
        other_side = torch.where(self.looks_left, distance < 0, distance > 0)  # (H, T, S)
        return (-self.half_slopes * distance.abs()).masked_fill(other_side, float("-inf"))


def t5_buckets(distance: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bucket of each query-key distance i - j (long, the shape of `distance`): Hugging Face transformers'
    `T5Attention._relative_position_bucket(j - i, bidirectional, num_buckets, max_distance)`.

    Bidirectional: keys left of the query (and the query itself) take buckets 0 .. n/2 - 1, keys right of it the
    other half. One-sided (causal): every key at or left of the query, all n buckets. Within a side's n' buckets, the
    first n'/2 are exact distances, the rest log-spaced up to max_distance, beyond which all share the last."""
    buckets = torch.zeros_like(distance)
    if bidirectional:
        num_buckets //= 2
        buckets = (distance < 0).long() * num_buckets  # keys right of the query
        distance = distance.abs()
    else:
        distance = distance.clamp(min=0)  # keys right of the query are masked: bucket 0, as HF's
    exact = num_buckets // 2
    scale = (num_buckets - exact) / math.log(max_distance / exact)
    log_spaced = exact + (torch.log(distance.clamp(min=exact).float() / exact) * scale).long()
    return buckets + torch.where(distance < exact, distance, log_spaced.clamp(max=num_buckets - 1))


class T5Bias(AttentionPositions):
    """T5's relative position bias (Raffel et al. 2020): head h adds a learned scalar to the score of a query-key pair,
    one per bucket of their distance (`t5_buckets`: two-sided in bidirectional attention, one-sided in causal). As in
    T5, a stack shares one table across its layers. The table is `buckets`, not `table`: checkpoint loading cuts
    tables named `positions.table` (learned absolute positions) to the data's lengths."""

    def __init__(self, n_heads: int, head_dim: int, num_buckets: int = 32, max_distance: int = 128) -> None:
        super().__init__(n_heads, head_dim)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.buckets = nn.Embedding(num_buckets, n_heads)
        nn.init.normal_(self.buckets.weight, std=(n_heads * head_dim) ** -0.5)  # HF's T5 init: d_model^-0.5

    def bias(self, queries: int, keys: int, offset: int, causal: bool) -> torch.Tensor:
        """(H, T, S): the head's value for the bucket of i - j, with -inf for keys after the query if causal."""
        distance = key_distances(queries, keys, offset, self.buckets.weight.device)  # (T, S)
        bias = self.buckets(t5_buckets(distance, not causal, self.num_buckets, self.max_distance)).permute(2, 0, 1)
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
ATTENTION_POSITIONS = {"alibi": ALiBi, "rope": Rotary, "t5": T5Bias, "none": AttentionPositions}


def attention_positions(positions: str | None, n_heads: int, head_dim: int) -> AttentionPositions:
    """What self-attention does with `positions`: ALiBi, RoPE or T5's bias inside it; nothing for the absolute
    encodings, which the embeddings add, nor for `none` or None. A stack calls it once and shares the module."""
    return ATTENTION_POSITIONS.get(positions, AttentionPositions)(n_heads, head_dim)


def check_order(key: str, positions: str, bidirectional: bool, stack: str = "the stack") -> None:
    """ConfigError naming `key` for `none` (NoPE) in a stack that attends both ways: a causal mask tells positions
    apart (a token sees as many keys as its position), nothing does in bidirectional attention."""
    if positions == "none" and bidirectional:
        others = [choice for choice in POSITION_CHOICES if choice != "none"]
        raise ConfigError(
            f"{key}=none: {stack} attends both ways, so nothing there tells positions apart; choose one of {others}"
        )


def check_positions(key: str, positions: str, d_model: int, n_heads: int) -> None:
    """ConfigError naming `key` unless `positions` is a choice that these sizes allow (RoPE rotates pairs of
    dimensions: the head width must be even)."""
    if positions not in POSITION_CHOICES:
        raise ConfigError(f"{key}={positions!r}: choose one of {POSITION_CHOICES}")
    head_dim = d_model // n_heads
    if positions == "rope" and head_dim % 2:
        raise ConfigError(
            f"{key}=rope: rotates pairs of dimensions, so d_model / n_heads must be even, not {d_model} / {n_heads} "
            f"= {head_dim}"
        )
