"""Transformer encoder-decoder (Vaswani et al. 2017) on SDPA, with a key/value cache for decoding.

Shapes: B batch, S source length, T target length, D d_model, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from nlparena.data.vocab import PAD
from nlparena.networks.layers import (
    AttentionStackConfig,
    CrossAttention,
    Dropout,
    FeedForward,
    SelfAttention,
    TokenEmbedding,
    check_sizes,
    padding_mask,
)
from nlparena.networks.positions import (
    AttentionPositions,
    Positions,
    attention_positions,
    check_order,
    check_positions,
)


@dataclass(frozen=True)
class TransformerConfig(AttentionStackConfig):
    """The Transformer's sizes and choices: `model.transformer.*` in a config."""

    group: ClassVar[str] = "transformer"

    num_encoder_layers: int = 2
    """encoder layers (self-attention + feed-forward)"""
    num_decoder_layers: int = 2
    """decoder layers (causal self-attention + cross-attention + feed-forward)"""
    positions: Positions = "sinusoidal"
    """positional encoding: fixed sinusoids (any length), a learned table (lengths seen in training), or, inside
    self-attention, ALiBi's distance biases (in the encoder, half the heads look left and half right), rotary
    embeddings (RoPE) or T5's learned bias per distance bucket; `none` is refused (the encoder attends both ways)"""
    norm_first: bool = True
    """pre-norm residual blocks (stable without warmup) instead of the paper's post-norm"""
    share_embeddings: bool = True
    """one matrix for the source embedding, the target embedding and the output projection"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sizes(self.group, num_encoder_layers=self.num_encoder_layers, num_decoder_layers=self.num_decoder_layers)
        key = f"model.{self.group}.positions"
        check_positions(key, self.positions, self.d_model, self.n_heads)
        check_order(key, self.positions, bidirectional=True, stack="the encoder")


@dataclass
class EncoderOutput:
    """What every decoder step reads: encoder states and which source positions are real."""

    states: torch.Tensor  # (B, S, D)
    mask: torch.Tensor | None  # (B, S) True for real tokens; None when no source has padding


@dataclass
class DecoderCache:
    """Per-layer keys/values of the tokens decoded so far and of the encoder states."""

    self_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    step: int = 0


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each in a residual block (pre- or post-norm).

    `ff_inner_dropout`: dropout also between the feed-forward block's two linear layers, as in
    `torch.nn.TransformerEncoderLayer`; BERT has none there. `positions`: the encoding, for those that act inside
    attention (ALiBi, RoPE, T5's bias): the stack's shared module, or a name for one of this layer's own.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        norm_first: bool,
        layer_norm_eps: float = 1e-5,
        ff_inner_dropout: bool = True,
        positions: str | AttentionPositions | None = None,
    ) -> None:
        super().__init__()
        self.attn = SelfAttention(d_model, n_heads, dropout, positions)
        self.ff = FeedForward(d_model, d_ff, dropout if ff_inner_dropout else 0.0)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, layer_norm_eps), nn.LayerNorm(d_model, layer_norm_eps)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, S, D); mask (B, S) True for real tokens, or None when there is no padding."""
        if self.norm_first:
            x = x + self.dropout(self.attn(self.norm1(x), mask))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x, mask)))
        return self.norm2(x + self.dropout(self.ff(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over the encoder, feed-forward."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        norm_first: bool,
        positions: str | AttentionPositions | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttention(d_model, n_heads, dropout, positions, causal=True)
        self.cross_attn = CrossAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        y: torch.Tensor,
        self_kv: tuple[torch.Tensor, torch.Tensor] | None,
        cross_kv: tuple[torch.Tensor, torch.Tensor],
        memory_mask: torch.Tensor | None,
        cross_weights: list[torch.Tensor] | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """y (B, T, D); self_kv are the cached keys/values of every target position y may attend to, or None for
        causal self-attention over y itself (teacher forcing: query, key and value from one matmul).

        When `cross_weights` is a list, the cross-attention weights (B, H, T, S) are appended to it. `offset` is the
        position of y's first token (the decoding step, with the cache).
        """

        def cross(h: torch.Tensor) -> torch.Tensor:
            if cross_weights is not None:
                cross_weights.append(self.cross_attn.weights(h, cross_kv[0], memory_mask))
            return self.cross_attn(h, *cross_kv, memory_mask)

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            return self.self_attn(h) if self_kv is None else self.self_attn.step(h, *self_kv, offset)

        blocks = (self_attention, cross, self.ff)
        for norm, block in zip(self.norms, blocks, strict=True):
            y = y + self.dropout(block(norm(y))) if self.norm_first else norm(y + self.dropout(block(y)))
        return y

    def self_keys_values(self, y: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the self-attention for y (B, T, D) at positions offset.., computed from y as this layer
        sees it."""
        return self.self_attn.keys_values(self.norms[0](y) if self.norm_first else y, offset)


class Transformer(nn.Module):
    """Encoder-decoder Transformer over one shared vocabulary.

    Args:
        config: sizes and choices (TransformerConfig).
        vocab_size, pad_id: of the data's vocabulary.
        max_len: size of the positional table; longer sequences are refused.
    """

    def __init__(self, config: TransformerConfig, vocab_size: int, max_len: int, pad_id: int = PAD) -> None:
        super().__init__()
        c = config
        self.pad_id = pad_id
        self.src_embed = TokenEmbedding(vocab_size, c.d_model, max_len, c.positions, c.dropout, pad_id)
        shared = self.src_embed.tokens if c.share_embeddings else None
        self.tgt_embed = TokenEmbedding(vocab_size, c.d_model, max_len, c.positions, c.dropout, pad_id, tokens=shared)
        layer_args = (c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
        # Absolute positions are added by the embeddings; self-attention takes the others (positions.py), one module
        # per stack shared by its layers (T5's bias is one table per stack, as in T5).
        encoder_positions, decoder_positions = (
            attention_positions(c.positions, c.n_heads, c.d_model // c.n_heads) for _ in range(2)
        )
        self.encoder = nn.ModuleList(
            EncoderLayer(*layer_args, positions=encoder_positions) for _ in range(c.num_encoder_layers)
        )
        self.decoder = nn.ModuleList(DecoderLayer(*layer_args, decoder_positions) for _ in range(c.num_decoder_layers))
        # Pre-norm stacks end with a LayerNorm; post-norm layers already end normalised.
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.generator = nn.Linear(c.d_model, vocab_size)
        for embed in (self.src_embed, self.tgt_embed):  # unit variance after the sqrt(D) scale; PAD stays zero
            nn.init.normal_(embed.tokens.weight, std=c.d_model**-0.5)
            with torch.no_grad():
                embed.tokens.weight[pad_id].zero_()
        if c.share_embeddings:
            self.generator.weight = self.src_embed.tokens.weight

    def encode(self, src: torch.Tensor) -> EncoderOutput:
        """src (B, S) -> states (B, S, D) and the source mask."""
        mask = padding_mask(src, self.pad_id)  # (B, S), or None without padding
        x = self.src_embed(src)
        for layer in self.encoder:
            x = layer(x, mask)
        return EncoderOutput(self.encoder_norm(x), mask)

    def decode(
        self, memory: EncoderOutput, tgt_in: torch.Tensor, cross_weights: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Teacher-forced decoding: tgt_in (B, T) -> logits (B, T, V); position t sees tgt_in[:, : t + 1]."""
        y = self.tgt_embed(tgt_in)
        for layer in self.decoder:
            cross_kv = layer.cross_attn.keys_values(memory.states)
            y = layer(y, None, cross_kv, memory.mask, cross_weights=cross_weights)
        return self.generator(self.decoder_norm(y))

    def attention_weights(self, memory: EncoderOutput, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced cross-attention of the last decoder layer, averaged over heads: (B, T, S)."""
        weights: list[torch.Tensor] = []
        self.decode(memory, tgt_in, cross_weights=weights)
        return weights[-1].mean(1)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src), tgt_in)

    def init_cache(self, memory: EncoderOutput) -> DecoderCache:
        return DecoderCache(cross_kv=[layer.cross_attn.keys_values(memory.states) for layer in self.decoder])

    def decode_step(self, memory: EncoderOutput, token: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """One step with the cache: token (B,) -> logits (B, V) for the next position."""
        y = self.tgt_embed(token.unsqueeze(1), offset=cache.step)  # (B, 1, D)
        for i, layer in enumerate(self.decoder):
            k, v = layer.self_keys_values(y, offset=cache.step)  # (B, H, 1, Dh)
            if cache.step:
                k = torch.cat([cache.self_kv[i][0], k], dim=2)  # (B, H, step + 1, Dh)
                v = torch.cat([cache.self_kv[i][1], v], dim=2)
                cache.self_kv[i] = (k, v)
            else:
                cache.self_kv.append((k, v))
            y = layer(y, (k, v), cache.cross_kv[i], memory.mask, offset=cache.step)
        cache.step += 1
        return self.generator(self.decoder_norm(y[:, -1]))
