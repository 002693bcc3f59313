"""Parts shared by the architectures: attention on SDPA, positions, embeddings, `shift_right`.

Shapes: B batch, T query length, S key length, D model width, H heads, Dh = D / H.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nlparena.data.vocab import BOS, PAD
from nlparena.errors import ConfigError


def shift_right(tgt: torch.Tensor, bos_id: int = BOS) -> torch.Tensor:
    """Decoder input: BOS followed by the target without its last token. (B, T) -> (B, T)."""
    return torch.cat([torch.full_like(tgt[:, :1], bos_id), tgt[:, :-1]], dim=1)


def padding_mask(ids: torch.Tensor, pad_id: int = PAD) -> torch.Tensor | None:
    """(B, S) True for real tokens, or None when no row has padding: SDPA then runs its flash kernel, which takes no
    mask. The check reads one value on the host (a device sync on a GPU); a compiled network always gets the mask,
    so that the graph does not depend on the data."""
    mask = ids != pad_id
    if torch.compiler.is_compiling() or not bool(mask.all()):
        return mask
    return None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout`: each element kept with probability 1 - p and scaled by 1 / (1 - p). On CPU the mask is drawn with
    `torch.rand` instead: ATen's CPU dropout draws it with `bernoulli_`, which made the forward and backward of a
    dropout 1.8 times slower (2.5 ms against 1.4 ms for 32 x 64 x 256 floats) and dropout 11 % of a BERT training
    step on CPU (benchmarks/README.md). Uniforms are drawn in float32 whatever x's dtype, so p is not rounded."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)  # one fused kernel on a GPU
    return x * ((torch.rand(x.shape, dtype=torch.float32, device=x.device) >= p) * (1.0 / (1.0 - p))).to(x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout through `dropout` (its faster mask on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, p: float
) -> torch.Tensor:
    """`F.scaled_dot_product_attention` in training with attention dropout p, computed as its math path is (on CPU
    SDPA has no fused kernel with dropout and runs this: scores, mask, softmax, dropout, weighted sum), with the
    dropout of `dropout`. mask: bool (True attends) or float (added to the scores), broadcast to (B, H, T, S)."""
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, H, T, S)
    if is_causal:  # SDPA's: query i sees keys 0..i
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).tril()
        mask = causal if mask is None else mask & causal
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return dropout(scores.softmax(-1), p, training=True) @ v


def check_sizes(group: str, **sizes: int) -> None:
    """ConfigError naming the first size below 1, as its config key (`model.transformer.d_model=0: ...`)."""
    for key, value in sizes.items():
        if value < 1:
            raise ConfigError(f"model.{group}.{key}={value}: must be at least 1")


def check_dropout(group: str, dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.{group}.dropout={dropout}: must be in [0, 1)")


def check_choice(key: str, value: object, choices: Iterable[object]) -> None:
    """ConfigError unless `value` is one of `choices` (jsonargparse checks Literal types, a direct call does not)."""
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: choose one of {choices}")


def check_heads(d_model: int, n_heads: int, group: str | None = None) -> None:
    """ConfigError unless d_model splits into n_heads equal heads; named as config keys when `group` is given."""
    key = f"model.{group}." if group else ""
    if n_heads < 1 or d_model % n_heads:
        raise ConfigError(f"{key}d_model={d_model} must be divisible by {key}n_heads={n_heads}")


@dataclass(frozen=True)
class AttentionStackConfig:
    """The sizes of every stack of attention and feed-forward layers; TransformerConfig and BertConfig add theirs."""

    group: ClassVar[str]  # the config key the model gives it: `model.<group>.d_model`

    d_model: int = 128
    """width of every token's vector"""
    n_heads: int = 4
    """attention heads; d_model must be divisible by it"""
    d_ff: int = 256
    """hidden width of each feed-forward block"""
    dropout: float = 0.1
    """dropout after embeddings, attention weights and every residual branch"""

    def __post_init__(self) -> None:
        check_sizes(self.group, d_model=self.d_model, d_ff=self.d_ff)
        check_heads(self.d_model, self.n_heads, self.group)
        check_dropout(self.group, self.dropout)


class ALiBi(nn.Module):
    """Attention with linear biases (Press et al. 2022, "Train Short, Test Long"): no position vectors; head h adds
    -m_h * distance to its attention scores, with slopes m_h = 2^(-8 h / H), h = 1..H (the paper's geometric
    sequence). The bias depends on the distance between query and key only, so nothing is tied to an absolute
    position the training data may not have had."""

    def __init__(self, n_heads: int, head_dim: int) -> None:
        super().__init__()
        slopes = torch.tensor([2.0 ** (-8.0 * h / n_heads) for h in range(1, n_heads + 1)])
        self.register_buffer("slopes", slopes.view(n_heads, 1, 1), persistent=False)

    def bias(self, query_positions: torch.Tensor, key_positions: torch.Tensor, causal: bool) -> torch.Tensor:
        """(H, T, S) to add to the scores: -m_h |i - j| (encoder), with -inf for keys after the query if causal."""
        distance = query_positions[:, None] - key_positions[None, :]  # (T, S): i - j
        bias = -self.slopes * distance.abs().to(self.slopes.dtype)
        return bias.masked_fill(distance < 0, float("-inf")) if causal else bias


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer): queries and keys are rotated, pair of dimensions by pair,
    by angles proportional to their position, so that a query-key dot product depends on their offset only."""

    def __init__(self, n_heads: int, head_dim: int, base: float = 10_000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ConfigError(f"rope positions need an even head width; d_model / n_heads is {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (Dh/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x (B, H, T, Dh) at `positions` (T,) -> x rotated, the same shape and dtype."""
        angles = positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]  # (T, Dh/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


RELATIVE_POSITIONS = {"alibi": ALiBi, "rope": Rotary}


class MultiHeadAttention(nn.Module):
    """Multi-head attention through `F.scaled_dot_product_attention` (flash / memory-efficient kernels).

    The query, key and value projections are one (3D, D) matrix, rows [query; key; value]: self-attention
    projects with one matmul, cross-attention and the decoding cache use its query or key/value rows.

    With `positions` "alibi" or "rope" (self-attention only), positions enter the scores here (ALiBi, Rotary) instead
    of the embeddings; `offset` is the position of the first query (and of the first new key) in decoding steps.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, positions: str | None = None) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        self.d_model, self.n_heads, self.dropout = d_model, n_heads, dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.relative = None if positions is None else RELATIVE_POSITIONS[positions](n_heads, d_model // n_heads)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)

    def project(self, x: torch.Tensor, rows: slice) -> torch.Tensor:
        """x (B, T, D) through the `rows` of the input projection (views of the weight, no copy)."""
        return F.linear(x, self.in_proj.weight[rows], self.in_proj.bias[rows])

    def keys_values(self, x: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, D) at positions offset.. -> keys and values, each (B, H, S, Dh); cached by the decoders."""
        k, v = self.project(x, slice(self.d_model, None)).chunk(2, dim=-1)
        k = self.split_heads(k)
        if isinstance(self.relative, Rotary):
            k = self.relative.rotate(k, positions(k.shape[2], offset, k.device))
        return k, self.split_heads(v)

    def sdpa(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None,
        is_causal: bool,
        offset: int = 0,
    ) -> torch.Tensor:
        """Heads q (B, H, T, Dh) over k, v (B, H, S, Dh) -> (B, T, D) after the output projection. The queries sit at
        positions offset.. and the keys at 0.. (rotated already, for rope)."""
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
        if isinstance(self.relative, Rotary):
            q = self.relative.rotate(q, positions(q.shape[2], offset, q.device))
        elif isinstance(self.relative, ALiBi):
            bias = self.relative.bias(
                positions(q.shape[2], offset, q.device), positions(k.shape[2], 0, k.device), is_causal
            )
            bias = bias.to(q.dtype).unsqueeze(0)  # (1, H, T, S), causal order folded in
            mask, is_causal = (bias if mask is None else bias.masked_fill(~mask, float("-inf"))), False
        if self.training and self.dropout > 0.0 and q.device.type == "cpu":
            out = attention_with_dropout(q, k, v, mask, is_causal, self.dropout)  # (B, H, T, Dh)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
            )  # (B, H, T, Dh)
        B, H, T, Dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T, H * Dh))  # (B, T, D)

    def self_attend(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """Self-attention of x (B, T, D), its query, key and value from one matmul; key_mask (B, T) or None."""
        q, k, v = (self.split_heads(t) for t in self.in_proj(x).chunk(3, dim=-1))
        if isinstance(self.relative, Rotary):
            k = self.relative.rotate(k, positions(k.shape[2], 0, k.device))
        return self.sdpa(q, k, v, key_mask, is_causal)

    def attend(
        self,
        query: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        offset: int = 0,
    ) -> torch.Tensor:
        """query (B, T, D) at positions offset.. over keys/values (B, H, S, Dh); key_mask (B, S) is True for real
        tokens, None for all."""
        return self.sdpa(self.queries(query), k, v, key_mask, is_causal, offset)

    def queries(self, query: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, Dh)."""
        return self.split_heads(self.project(query, slice(0, self.d_model)))

    def weights(self, query: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights (B, H, T, S) that `attend` uses, computed explicitly (SDPA does not return them)."""
        q = self.queries(query)  # (B, H, T, Dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, S)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return scores.softmax(-1)

    def forward(
        self,
        query: torch.Tensor,
        key_value: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        if query is key_value:
            return self.self_attend(query, key_mask, is_causal)
        return self.attend(query, *self.keys_values(key_value), key_mask, is_causal)


class FeedForward(nn.Sequential):
    """Position-wise Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d_model))


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


def positions(length: int, offset: int, device: torch.device) -> torch.Tensor:
    """Positions offset .. offset + length - 1: (length,)."""
    return torch.arange(offset, offset + length, device=device)


def check_length(length: int, table_size: int) -> None:
    if length > table_size:
        raise ConfigError(f"sequence length {length} is beyond the positional table (model.max_len={table_size})")


POSITIONS = {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}
POSITION_CHOICES = [*POSITIONS, *RELATIVE_POSITIONS]  # relative ones act inside attention, not in the embedding


class TokenEmbedding(nn.Module):
    """Token embedding scaled by sqrt(D), plus positions, then dropout."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int,
        positions: str = "sinusoidal",
        dropout: float = 0.0,
        pad_id: int = PAD,
        tokens: nn.Embedding | None = None,
    ) -> None:
        super().__init__()
        self.tokens = tokens or nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        check_choice("positions", positions, POSITION_CHOICES)
        self.positions = POSITIONS[positions](d_model, max_len) if positions in POSITIONS else None
        self.scale = math.sqrt(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(B, T) ids -> (B, T, D)."""
        x = self.tokens(ids) * self.scale
        if self.positions is not None:
            x = x + self.positions(ids.shape[1], offset)
        return self.dropout(x)
