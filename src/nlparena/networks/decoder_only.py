"""Decoder-only Transformer (GPT-style) for translation data: one stack reads `source <BOS> target`, causal over all
of it, or a prefix LM whose source positions attend to each other both ways (Raffel et al. 2020, section 3.2.1).

The source is left-padded (its padding moved before its first token), so that the target starts at the same column
in every row and a batch decodes step by step with one key/value cache; absolute positions are counted from each
row's first real token and the other encodings depend on offsets only, so padding changes nothing.

Shapes: B batch, S source length, T target length, L = S + T, D d_model, H heads, Dh = D / H, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.networks.layers import (
    AttentionStackConfig,
    Dropout,
    FeedForward,
    SelfAttention,
    TokenEmbedding,
    attention_weights,
    check_choice,
    check_sizes,
)
from nlparena.networks.positions import Positions, attention_positions, check_positions


@dataclass(frozen=True)
class DecoderOnlyConfig(AttentionStackConfig):
    """The decoder-only Transformer's sizes and choices: `model.decoder.*` in a config."""

    group: ClassVar[str] = "decoder"

    num_layers: int = 4
    """layers (self-attention + feed-forward) of the one stack"""
    positions: Positions = "sinusoidal"
    """positional encoding: fixed sinusoids, a learned table, or inside self-attention ALiBi's distance biases,
    rotary embeddings (RoPE), T5's bucketed relative bias; `none` (NoPE): the causal mask alone tells positions apart"""
    attention: Literal["causal", "prefix"] = "causal"
    """`causal`: every position sees the ones before it; `prefix`: the source positions also see each other both
    ways (a prefix LM), the target stays causal"""
    norm_first: bool = True
    """pre-norm residual blocks (stable without warmup) instead of post-norm"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sizes(self.group, num_layers=self.num_layers)
        check_choice(f"model.{self.group}.attention", self.attention, ["causal", "prefix"])
        check_positions(f"model.{self.group}.positions", self.positions, self.d_model, self.n_heads)
        if self.positions == "none" and self.attention == "prefix":
            raise ConfigError(
                f"model.{self.group}.positions=none with model.{self.group}.attention=prefix: the source attends both "
                "ways and nothing else carries its order; choose attention=causal, or other positions"
            )


def left_padded(src: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, S) with each row's padding moved before its tokens (their order kept), and where each column of the
    result came from: (B, S) ids, (B, S) columns of src."""
    order = (src != pad_id).int().argsort(dim=1, stable=True)  # padding (0) first, then the tokens in their order
    return src.gather(1, order), order


@dataclass
class Prompt:
    """What every decoding step reads: the left-padded source, which of its columns are real, where each came from."""

    ids: torch.Tensor  # (B, S)
    real: torch.Tensor  # (B, S) True for real tokens
    order: torch.Tensor  # (B, S) the source column each came from


@dataclass
class PromptCache:
    """Per-layer keys/values of the source and of the tokens decoded so far."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    step: int = 0


def allowed_keys(real: torch.Tensor, length: int, prefix: int) -> torch.Tensor:
    """(B, 1, L, L) True where query i may attend to key j: a real key at or before i, or anywhere in the source when
    both are in it (`prefix` columns; 0 for causal attention). A query always sees itself, so that the padding's
    queries have a key (their outputs are never read)."""
    B = real.shape[0]
    keys = torch.cat([real, real.new_ones(B, length - real.shape[1])], dim=1)  # (B, L)
    i = torch.arange(length, device=real.device)
    structure = (i[None, :] <= i[:, None]) | ((i[:, None] < prefix) & (i[None, :] < prefix))  # (L, L)
    return ((structure & keys[:, None, :]) | torch.eye(length, dtype=torch.bool, device=real.device))[:, None]


class DecoderOnlyLayer(nn.Module):
    """Self-attention over everything allowed, then feed-forward, each in a residual block (pre- or post-norm)."""

    def __init__(self, config: DecoderOnlyConfig, positions: nn.Module) -> None:
        super().__init__()
        c = config
        self.attn = SelfAttention(c.d_model, c.n_heads, c.dropout, positions)
        self.ff = FeedForward(c.d_model, c.d_ff, c.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.dropout = Dropout(c.dropout)
        self.norm_first = c.norm_first

    def keys_values(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated at positions offset..) and values of x (B, T, D) as this layer's attention sees it."""
        return self.attn.keys_values(self.norm1(x) if self.norm_first else x, offset)

    def attention(
        self, h: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], allowed: torch.Tensor, offset: int, prefix: int
    ) -> torch.Tensor:
        """h (B, T, D) at positions offset.. over keys/values (B, H, S, Dh) at 0..; allowed (B, 1, T, S) bool."""
        q = self.attn.positions.rotate(self.attn.queries(h), offset)
        return self.attn.attend(q, *kv, self.mask(allowed, offset, q.dtype, prefix), False)

    def mask(self, allowed: torch.Tensor, offset: int, dtype: torch.dtype, prefix: int = 0) -> torch.Tensor:
        """SDPA's attn_mask: `allowed`, or the positions' bias where it is True: two-sided on the rows of the `prefix`
        columns, which attend both ways, one-sided (causal) on the others, which see no later key."""
        T, S = allowed.shape[-2:]
        bias = self.attn.positions.bias(T, S, offset, True)  # (H, T, S) or None
        if bias is None:
            return allowed
        if prefix > offset:
            both_ways = torch.arange(offset, offset + T, device=bias.device)[:, None] < prefix  # (T, 1)
            bias = torch.where(both_ways, self.attn.positions.bias(T, S, offset, False), bias)
        return bias.to(dtype).unsqueeze(0).masked_fill(~allowed, float("-inf"))

    def weights(self, x: torch.Tensor, allowed: torch.Tensor, prefix: int) -> torch.Tensor:
        """The attention weights (B, H, L, L) of x (B, L, D) from position 0."""
        h = self.norm1(x) if self.norm_first else x
        q = self.attn.positions.rotate(self.attn.queries(h))
        k, _ = self.attn.keys_values(h)
        return attention_weights(q, k, self.mask(allowed, 0, q.dtype, prefix), False)

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        allowed: torch.Tensor,
        offset: int = 0,
        prefix: int = 0,
    ) -> torch.Tensor:
        """x (B, T, D) at positions offset.., attending to the keys/values kv of positions 0.. (its own included);
        the first `prefix` columns attend both ways."""
        if self.norm_first:
            x = x + self.dropout(self.attention(self.norm1(x), kv, allowed, offset, prefix))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, kv, allowed, offset, prefix)))
        return self.norm2(x + self.dropout(self.ff(x)))


class DecoderStack(nn.Module):
    """Token and position embeddings, the layers, the final norm: the one stack over `source <BOS> target` (or over a
    text to classify).

    Args:
        config: sizes and choices (DecoderOnlyConfig).
        vocab_size, pad_id: of the data's vocabulary.
        table_len: the positional table's size: the longest sequence the stack reads.
    """

    def __init__(self, config: DecoderOnlyConfig, vocab_size: int, table_len: int, pad_id: int) -> None:
        super().__init__()
        c = config
        self.prefix = c.attention == "prefix"
        self.embed = TokenEmbedding(vocab_size, c.d_model, table_len, c.positions, c.dropout, pad_id)
        shared = attention_positions(c.positions, c.n_heads, c.d_model // c.n_heads)  # one module for the stack
        self.layers = nn.ModuleList(DecoderOnlyLayer(c, shared) for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        nn.init.normal_(self.embed.tokens.weight, std=c.d_model**-0.5)  # unit variance after the sqrt(D) scale
        with torch.no_grad():
            self.embed.tokens.weight[pad_id].zero_()

    def positions(self, prompt: Prompt, start: int, length: int) -> torch.Tensor:
        """(B, length) positions of columns start.. counted from each row's first real token."""
        first = prompt.real.shape[1] - prompt.real.sum(1, keepdim=True)  # (B, 1) padding before the source
        return (torch.arange(start, start + length, device=first.device)[None, :] - first).clamp(min=0)

    def forward(
        self,
        prompt: Prompt,
        tgt_in: torch.Tensor,
        weights: list[torch.Tensor] | None = None,
        kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """The normalised last layer's states (B, L, D) of the source followed by tgt_in (B, T; T may be 0); each
        layer's attention weights (B, H, L, L) are appended to `weights`, its keys/values (B, H, L, Dh) to `kv`, when
        they are lists."""
        ids = torch.cat([prompt.ids, tgt_in], dim=1)  # (B, L)
        x = self.embed(ids, position=self.positions(prompt, 0, ids.shape[1]))
        prefix = prompt.ids.shape[1] if self.prefix else 0  # the columns that attend both ways
        allowed = allowed_keys(prompt.real, ids.shape[1], prefix)
        for layer in self.layers:
            if weights is not None:
                weights.append(layer.weights(x, allowed, prefix))
            layer_kv = layer.keys_values(x, 0)
            if kv is not None:
                kv.append(layer_kv)
            x = layer(x, layer_kv, allowed, 0, prefix)
        return self.norm(x)


class DecoderOnly(nn.Module):
    """One stack of self-attention layers over `source <BOS> target`; the same interface as the encoder-decoders
    (`encode`, `decode`, `init_cache`, `decode_step`), so every decoding, metric and command works with it.

    Args:
        config: sizes and choices (DecoderOnlyConfig).
        vocab_size, pad_id: of the data's vocabulary.
        max_len: the longest source or target; the positional table holds a source and a target of it.
    """

    def __init__(self, config: DecoderOnlyConfig, vocab_size: int, max_len: int, pad_id: int = PAD) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.stack = DecoderStack(config, vocab_size, 2 * max_len, pad_id)
        self.generator = nn.Linear(config.d_model, vocab_size)
        self.generator.weight = self.stack.embed.tokens.weight

    def encode(self, src: torch.Tensor) -> Prompt:
        """src (B, S), padded anywhere -> the prompt every step reads (nothing is computed yet)."""
        ids, order = left_padded(src, self.pad_id)
        return Prompt(ids, ids != self.pad_id, order)

    def decode(self, prompt: Prompt, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoding: tgt_in (B, T) -> logits (B, T, V); target position t sees tgt_in[:, : t + 1]."""
        return self.generator(self.stack(prompt, tgt_in)[:, prompt.ids.shape[1] :])

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src), tgt_in)

    def attention_weights(self, prompt: Prompt, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced attention of the last layer's target positions over the source columns as they were given
        (not left-padded), averaged over heads: (B, T, S); 0 on padding."""
        weights: list[torch.Tensor] = []
        self.stack(prompt, tgt_in, weights)
        S = prompt.ids.shape[1]
        over_source = weights[-1].mean(1)[:, S:, :S]  # (B, T, S) over the left-padded columns
        index = prompt.order[:, None, :].expand_as(over_source)
        return torch.zeros_like(over_source).scatter(2, index, over_source)

    def init_cache(self, prompt: Prompt) -> PromptCache:
        """Every layer's keys/values of the source."""
        cache = PromptCache([])
        self.stack(prompt, prompt.ids[:, :0], kv=cache.kv)
        return cache

    def decode_step(self, prompt: Prompt, token: torch.Tensor, cache: PromptCache) -> torch.Tensor:
        """One step with the cache: token (B,) -> logits (B, V) for the next position."""
        stack, at = self.stack, prompt.ids.shape[1] + cache.step  # the token's column
        x = stack.embed(token.unsqueeze(1), position=stack.positions(prompt, at, 1))  # (B, 1, D)
        allowed = torch.cat([prompt.real, prompt.real.new_ones(len(token), cache.step + 1)], dim=1)[:, None, None]
        for i, layer in enumerate(stack.layers):
            k, v = layer.keys_values(x, at)  # (B, H, 1, Dh)
            cache.kv[i] = (torch.cat([cache.kv[i][0], k], dim=2), torch.cat([cache.kv[i][1], v], dim=2))
            x = layer(x, cache.kv[i], allowed, at)
        cache.step += 1
        return self.generator(stack.norm(x[:, -1]))


class DecoderOnlyClassifier(nn.Module):
    """The decoder-only stack over a text, its last token's state (which has read every token before it) or the mean
    of its states, dropout, a linear classifier: a GPT-style classifier beside BERT.

    Args:
        pooling: `last` or `mean`.
    """

    def __init__(
        self,
        config: DecoderOnlyConfig,
        vocab_size: int,
        max_len: int,
        num_classes: int,
        pad_id: int = PAD,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"model.num_classes={num_classes}: must be at least 2")
        check_choice("model.pooling", pooling, ["last", "mean"])
        self.pad_id, self.pooling = pad_id, pooling
        self.stack = DecoderStack(config, vocab_size, max_len, pad_id)
        self.dropout = Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_classes)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, S) -> logits (B, C). `segments` is accepted so that every classifier is called alike, and
        ignored: the stack reads a pair's boundary from its SEP token."""
        left, order = left_padded(ids, self.pad_id)  # the last column is every row's last token
        prompt = Prompt(left, left != self.pad_id, order)
        states = self.stack(prompt, left[:, :0])  # (B, S, D)
        if self.pooling == "last":
            pooled = states[:, -1]
        else:
            real = prompt.real.unsqueeze(-1).to(states.dtype)  # (B, S, 1)
            pooled = (states * real).sum(1) / real.sum(1).clamp(min=1)
        return self.classifier(self.dropout(pooled))
