"""Parts shared by the architectures: attention on SDPA, embeddings, masks, `shift_right` (positions: positions.py).

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
from nlparena.networks.positions import (
    ABSOLUTE_POSITIONS,
    POSITION_CHOICES,
    AttentionPositions,
    attention_positions,
    key_distances,
)


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


def heads_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A key mask (B, S), True for real tokens, as SDPA's attn_mask for every head and query: (B, 1, 1, S)."""
    return None if key_mask is None else key_mask[:, None, None, :]


def with_causal_order(mask: torch.Tensor, queries: int, keys: int) -> torch.Tensor:
    """SDPA's attn_mask (bool or float) with its causal order folded in (query i sees keys 0..i), as one mask."""
    future = torch.ones(queries, keys, dtype=torch.bool, device=mask.device).triu(1)  # (T, S)
    return mask & ~future if mask.dtype == torch.bool else mask.masked_fill(future, float("-inf"))


def attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
    """The scores SDPA's softmax reads: q (B, H, T, Dh) . k (B, H, S, Dh) / sqrt(Dh), with mask as SDPA takes its
    attn_mask (bool: -inf where False; float: added), broadcast to (B, H, T, S); if is_causal, query i sees keys 0..i
    (SDPA's). -> (B, H, T, S)."""
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, H, T, S)
    if is_causal:
        everyone = torch.ones((), dtype=torch.bool, device=q.device)
        mask = with_causal_order(everyone if mask is None else mask, *scores.shape[-2:])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores


def open_empty_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An attention mask (bool, True attends; or float, -inf masks) whose rows with no key left (a query over a source
    of only padding) let every key through instead, and those rows (..., 1). A softmax under the returned mask holds
    no NaN, nor does its gradient; `.masked_fill(rows, 0.0)` then gives those queries weights 0, SDPA's output."""
    is_bool = mask.dtype == torch.bool
    # found on the mask, (B, 1, 1, 1) for a key mask, rather than on the scores, (B, H, T, 1): a pass fewer over them
    rows = ~mask.any(-1, keepdim=True) if is_bool else mask.amax(-1, keepdim=True).isneginf()
    return (mask | rows if is_bool else mask.masked_fill(rows, 0.0)), rows


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
    """Softmax of `attention_scores` over the keys: (B, H, T, S); 0 for a query with no key left to attend to."""
    if mask is None:  # the causal order alone leaves every query key 0
        return attention_scores(q, k, None, is_causal).softmax(-1)
    if is_causal:
        mask = with_causal_order(mask, q.shape[2], k.shape[2])
    mask, empty = open_empty_rows(mask)
    return attention_scores(q, k, mask, False).softmax(-1).masked_fill(empty, 0.0)


def attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, p: float
) -> torch.Tensor:
    """`F.scaled_dot_product_attention` in training with attention dropout p, computed as its math path is (on CPU
    SDPA has no fused kernel with dropout and runs this: scores, mask, softmax, dropout, weighted sum), with the
    dropout of `dropout`. mask: bool (True attends) or float (added to the scores), broadcast to (B, H, T, S)."""
    return dropout(attention_weights(q, k, mask, is_causal), p, training=True) @ v


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


class MultiHeadAttention(nn.Module):
    """Multi-head attention's projections and its computation on `F.scaled_dot_product_attention` (flash /
    memory-efficient kernels); SelfAttention and CrossAttention say where queries, keys and values come from.

    The query, key and value projections are one (3D, D) matrix, rows [query; key; value]: self-attention projects
    with one matmul, cross-attention and the decoding cache use its query or key/value rows.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_heads(d_model, n_heads)
        self.d_model, self.n_heads, self.dropout = d_model, n_heads, dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)

    def project(self, x: torch.Tensor, rows: slice) -> torch.Tensor:
        """x (B, T, D) through the `rows` of the input projection (views of the weight, no copy)."""
        return F.linear(x, self.in_proj.weight[rows], self.in_proj.bias[rows])

    def queries(self, query: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H, T, Dh)."""
        return self.split_heads(self.project(query, slice(0, self.d_model)))

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, D) -> keys and values, each (B, H, S, Dh)."""
        k, v = self.project(x, slice(self.d_model, None)).chunk(2, dim=-1)
        return self.split_heads(k), self.split_heads(v)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, is_causal: bool
    ) -> torch.Tensor:
        """Heads q (B, H, T, Dh) over k, v (B, H, S, Dh) -> (B, T, D) after the output projection; mask is SDPA's
        attn_mask (bool, True attends, or float, added), None for none."""
        if is_causal and mask is not None:  # SDPA takes one or the other
            mask, is_causal = with_causal_order(mask, q.shape[2], k.shape[2]), False
        if self.training and self.dropout > 0.0 and q.device.type == "cpu":
            out = attention_with_dropout(q, k, v, mask, is_causal, self.dropout)  # (B, H, T, Dh)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
            )  # (B, H, T, Dh)
        B, H, T, Dh = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T, H * Dh))  # (B, T, D)


class SelfAttention(MultiHeadAttention):
    """Attention of a sequence over itself, causal (a decoder's) or not, with the positions that act inside attention
    (`positions.attention_positions`: ALiBi, RoPE, T5's bias; nothing for the absolute encodings, which the embeddings
    add, nor for `none`). `positions` is a name, or a module that a stack shares across its layers."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        positions: str | AttentionPositions | None = None,
        causal: bool = False,
    ) -> None:
        super().__init__(d_model, n_heads, dropout)
        if not isinstance(positions, AttentionPositions):  # a stack may share one module across its layers
            positions = attention_positions(positions, n_heads, d_model // n_heads)
        self.positions = positions
        self.causal = causal

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D), its query, key and value from one matmul; key_mask (B, T) True for real tokens,
        or None for all."""
        q, k, v = (self.split_heads(t) for t in self.in_proj(x).chunk(3, dim=-1))  # each (B, H, T, Dh)
        return self.attend_at(self.positions.rotate(q), self.positions.rotate(k), v, key_mask, self.causal)

    def keys_values(self, x: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, D) at positions offset.. -> keys (rotated there) and values, each (B, H, S, Dh): a decoder caches
        them."""
        k, v = super().keys_values(x)
        return self.positions.rotate(k, offset), v

    def step(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offset: int) -> torch.Tensor:
        """The new token x (B, 1, D) at position offset over the cached keys/values (B, H, offset + 1, Dh) of every
        token up to it, its own included (from `keys_values`) -> (B, 1, D)."""
        return self.attend_at(self.positions.rotate(self.queries(x), offset), k, v, None, False, offset)

    def attend_at(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None,
        is_causal: bool,
        offset: int = 0,
    ) -> torch.Tensor:
        """`attend` with the positions' bias (if any) for queries at offset.. and keys at 0.., folded with the key
        mask and the causal order into one float mask.

        The bias is the one of this layer's direction, `self.causal`, also in a cached step (`is_causal` False: no key
        after the query to mask): T5's causal buckets are one-sided, its bidirectional ones are not. A query keeps its
        own key even where it is padding: ALiBi's heads that look one way would leave a padding query at the end of a
        sequence no key at all, a row that some SDPA kernels answer with NaN (its output is never read)."""
        mask = heads_mask(key_mask)  # (B, 1, 1, S) or None
        T, S = q.shape[2], k.shape[2]
        bias = self.positions.bias(T, S, offset, self.causal)  # (H, T, S) or None
        if bias is not None:
            bias = bias.to(q.dtype).unsqueeze(0)  # (1, H, T, S), causal order folded in
            if mask is not None:
                itself = key_distances(T, S, offset, q.device) == 0  # (T, S) each query's own key
                bias = bias.masked_fill(~(mask | itself), float("-inf"))
            mask, is_causal = bias, False
        return self.attend(q, k, v, mask, is_causal)


class CrossAttention(MultiHeadAttention):
    """Attention of queries over another sequence (a decoder over its encoder's states), positions playing no part."""

    def forward(
        self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """query (B, T, D) over keys/values (B, H, S, Dh) from `keys_values` -> (B, T, D); key_mask (B, S) True for
        real tokens, None for all."""
        return self.attend(self.queries(query), k, v, heads_mask(key_mask), False)

    def weights(self, query: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights (B, H, T, S) that `forward` applies, computed explicitly (SDPA does not return
        them)."""
        return attention_weights(self.queries(query), k, heads_mask(key_mask), False)


class FeedForward(nn.Sequential):
    """Position-wise Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(d_model, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d_model))


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
        self.positions = ABSOLUTE_POSITIONS[positions](d_model, max_len) if positions in ABSOLUTE_POSITIONS else None
        self.scale = math.sqrt(d_model)
        self.dropout = Dropout(dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0, position: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids at positions offset.., or at `position` (B, T) where each row has its own -> (B, T, D)."""
        x = self.tokens(ids) * self.scale
        if self.positions is not None and position is not None:
            x = x + self.positions(int(position.max()) + 1)[position]  # refuses positions beyond the table
        elif self.positions is not None:
            x = x + self.positions(ids.shape[1], offset)
        return self.dropout(x)
