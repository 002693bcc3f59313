"""RNN encoder-decoders, Seq2Seq and Seq2SeqAttention, with the Transformer's interface for decoding.

Shapes: B batch, S source length, T target length, M embedding width, L layers, V vocabulary,
Hd = hidden_size * directions: the width of the encoder outputs and of the decoder states.
Every tensor in RNNMemory and RNNCache has the batch first, so that beam search reorders them along dim 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.networks.layers import Dropout, check_choice, check_dropout, check_sizes, open_empty_rows

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
AttentionKind = Literal["bahdanau", "dot", "general"]


@dataclass(frozen=True)
class RNNConfig:
    """An RNN's sizes and cell: `model.rnn.*` in a config (RNNClassifier; Seq2SeqConfig adds to it)."""

    group: ClassVar[str] = "rnn"

    embed_dim: int = 64
    """width of the token embeddings"""
    hidden_size: int = 128
    """hidden size per direction; the encoder's outputs are hidden_size * 2 wide when bidirectional"""
    num_layers: int = 1
    """stacked recurrent layers (dropout acts between them)"""
    bidirectional: bool = True
    """whether the encoder also reads right to left"""
    cell: Literal["gru", "lstm"] = "gru"
    """the recurrent cell"""
    dropout: float = 0.1
    """dropout on embeddings, between layers and before the output layer"""

    def __post_init__(self) -> None:
        check_sizes(self.group, embed_dim=self.embed_dim, hidden_size=self.hidden_size, num_layers=self.num_layers)
        check_choice(f"model.{self.group}.cell", self.cell, CELLS)
        check_dropout(self.group, self.dropout)

    @property
    def state_size(self) -> int:
        """Width of the encoder's outputs, and of the decoder's states: hidden_size * directions."""
        return self.hidden_size * (2 if self.bidirectional else 1)


@dataclass(frozen=True)
class Seq2SeqConfig(RNNConfig):
    """An RNN encoder-decoder's sizes and cell: `model.rnn.*` in a config (Seq2Seq, Seq2SeqAttention)."""

    share_embeddings: bool = True
    """one matrix for source and target embeddings (the output layer reads more than a decoder state, so it is not
    tied)"""


@dataclass(frozen=True)
class AttentionConfig:
    """How Seq2SeqAttention's decoder attends: `model.attention.*` in a config."""

    group: ClassVar[str] = "attention"

    kind: AttentionKind = "bahdanau"
    """bahdanau (additive; Bahdanau et al. 2015), or Luong et al. 2015's multiplicative dot or general"""
    input_feeding: bool = False
    """Luong's input feeding: the previous attentional vector is fed to the RNN with the embedding"""

    def __post_init__(self) -> None:
        check_choice(f"model.{self.group}.kind", self.kind, get_args(AttentionKind))
        if self.input_feeding and self.kind == "bahdanau":
            raise ConfigError(
                "model.attention.input_feeding=true: Luong's input feeding needs attention.kind 'dot' or 'general'"
            )


def recurrent(
    cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool = False
) -> nn.RNNBase:
    """A batch-first GRU or LSTM; its dropout acts between layers, so a single layer gets none."""
    dropout = dropout if num_layers > 1 else 0.0
    return CELLS[cell](
        input_size, hidden_size, num_layers, batch_first=True, dropout=dropout, bidirectional=bidirectional
    )


@dataclass
class RNNMemory:
    """What the decoder reads of the source."""

    states: torch.Tensor  # (B, S, Hd) encoder outputs, 0 at PAD
    mask: torch.Tensor  # (B, S) True for real tokens
    hidden: torch.Tensor  # (B, L, Hd) initial decoder hidden state
    cell: torch.Tensor | None  # (B, L, Hd) initial decoder LSTM cell; None for GRU
    context: torch.Tensor  # (B, Hd) final encoder state of the top layer: all that Seq2Seq sees of the source
    keys: torch.Tensor | None = None  # (B, S, Hd) attention keys, computed once per source; None without them


@dataclass
class RNNCache:
    """Decoder state after the tokens decoded so far; each step replaces its tensors."""

    hidden: torch.Tensor  # (B, L, Hd)
    cell: torch.Tensor | None  # (B, L, Hd) LSTM only
    feed: torch.Tensor | None = None  # (B, Hd) previous attentional vector, with Luong's input feeding


class RNNEncoder(nn.Module):
    """Embedding -> dropout -> GRU/LSTM over packed sequences, so PAD never enters the recurrence."""

    def __init__(
        self, config: RNNConfig, vocab_size: int, pad_id: int = PAD, embedding: nn.Embedding | None = None
    ) -> None:
        super().__init__()
        c = config
        self.pad_id, self.directions = pad_id, 2 if c.bidirectional else 1
        self.embedding = embedding or nn.Embedding(vocab_size, c.embed_dim, padding_idx=pad_id)
        self.dropout = Dropout(c.dropout)
        self.rnn = recurrent(c.cell, c.embed_dim, c.hidden_size, c.num_layers, c.dropout, c.bidirectional)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """src (B, S) -> states (B, S, Hd), final hidden (L, B, Hd), final LSTM cell (L, B, Hd) or None."""
        # PAD only trails a sentence, so its length is the count of real tokens. A row of only PAD (length 0) cannot be
        # packed; the data never makes one, so it is clamped rather than refused. Packing wants lengths on the CPU.
        lengths = (src != self.pad_id).sum(1).clamp(min=1).cpu()
        x = self.dropout(self.embedding(src))  # (B, S, M)
        out, final = self.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, Hd), 0 at PAD
        hidden, cell = final if isinstance(final, tuple) else (final, None)
        return states, self.join_directions(hidden), None if cell is None else self.join_directions(cell)

    def join_directions(self, final: torch.Tensor) -> torch.Tensor:
        """(L * directions, B, hidden_size) -> (L, B, Hd): a layer's directions side by side, as in its outputs."""
        LD, B, H = final.shape
        layers = LD // self.directions
        per_layer = final.view(layers, self.directions, B, H).permute(0, 2, 1, 3)  # (L, B, directions, hidden_size)
        return per_layer.reshape(layers, B, self.directions * H)  # (L, B, Hd)


class RNNEncoderDecoder(nn.Module):
    """What Seq2Seq and Seq2SeqAttention share: checks, embeddings, encoder, bridge, running the decoder RNN.

    Subclasses build `decoder` (what it reads beside the embedding differs) and `unroll`.
    """

    def __init__(self, config: Seq2SeqConfig, vocab_size: int, max_len: int, pad_id: int = PAD) -> None:
        super().__init__()
        c = config
        self.pad_id, self.max_len = pad_id, max_len  # no positional table: max_len only keeps the common interface
        self.state_size = hd = c.state_size
        embedding = nn.Embedding(vocab_size, c.embed_dim, padding_idx=pad_id)
        self.encoder = RNNEncoder(c, vocab_size, pad_id, embedding)
        self.tgt_embed = embedding if c.share_embeddings else nn.Embedding(vocab_size, c.embed_dim, padding_idx=pad_id)
        self.dropout = Dropout(c.dropout)
        # Each encoder layer's final state, mapped and squashed, starts the decoder layer at the same depth.
        self.bridge = nn.Sequential(nn.Linear(hd, hd), nn.Tanh())
        self.cell_bridge = nn.Sequential(nn.Linear(hd, hd), nn.Tanh()) if c.cell == "lstm" else None

    def encode(self, src: torch.Tensor) -> RNNMemory:
        """src (B, S) -> encoder states, source mask and the decoder's initial state."""
        states, hidden, cell = self.encoder(src)  # (B, S, Hd), (L, B, Hd), (L, B, Hd) | None
        return RNNMemory(
            states=states,
            mask=src != self.pad_id,
            hidden=self.bridge(hidden).transpose(0, 1),  # (B, L, Hd)
            cell=None if self.cell_bridge is None else self.cell_bridge(cell).transpose(0, 1),  # (B, L, Hd)
            context=hidden[-1],
        )

    def decode(self, memory: RNNMemory, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoding: tgt_in (B, T) -> logits (B, T, V); position t sees tgt_in[:, : t + 1]."""
        return self.unroll(memory, tgt_in, self.init_cache(memory))[0]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src), tgt_in)

    def init_cache(self, memory: RNNMemory) -> RNNCache:
        return RNNCache(memory.hidden, memory.cell)

    def decode_step(self, memory: RNNMemory, token: torch.Tensor, cache: RNNCache) -> torch.Tensor:
        """One step from the cached state: token (B,) -> logits (B, V) for the next position."""
        return self.unroll(memory, token.unsqueeze(1), cache)[0][:, 0]

    def unroll(
        self, memory: RNNMemory, tgt_in: torch.Tensor, cache: RNNCache
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tgt_in (B, T) from the cached state, which it advances -> logits (B, T, V), weights (B, T, S) or None."""
        raise NotImplementedError

    def run_rnn(self, x: torch.Tensor, cache: RNNCache) -> torch.Tensor:
        """x (B, T, input) through the decoder RNN from the cached state, which it advances -> outputs (B, T, Hd)."""
        hidden = cache.hidden.transpose(0, 1).contiguous()  # (L, B, Hd), as nn.GRU / nn.LSTM want it
        if cache.cell is None:
            out, hidden = self.decoder(x, hidden)
        else:
            out, (hidden, cell) = self.decoder(x, (hidden, cache.cell.transpose(0, 1).contiguous()))
            cache.cell = cell.transpose(0, 1)  # (B, L, Hd)
        cache.hidden = hidden.transpose(0, 1)  # (B, L, Hd)
        return out


class Seq2Seq(RNNEncoderDecoder):
    """Encoder-decoder whose only view of the source is the encoder's final state c (Cho et al. 2014).

    The decoder reads c beside every input embedding, and the output layer reads [decoder state; c; embedding].
    Sutskever et al. 2014 is close to bidirectional=False, cell="lstm", num_layers=4.

    The decoder's hidden size is the encoder's output width (hidden_size * 2 when bidirectional); max_len is kept for
    the interface shared with the Transformer: an RNN has no positional table.
    """

    def __init__(self, config: Seq2SeqConfig, vocab_size: int, max_len: int, pad_id: int = PAD) -> None:
        super().__init__(config, vocab_size, max_len, pad_id)
        c, hd = config, self.state_size
        self.decoder = recurrent(c.cell, c.embed_dim + hd, hd, c.num_layers, c.dropout)  # c beside each embedding
        self.generator = nn.Linear(2 * hd + c.embed_dim, vocab_size)

    def unroll(self, memory: RNNMemory, tgt_in: torch.Tensor, cache: RNNCache) -> tuple[torch.Tensor, None]:
        emb = self.dropout(self.tgt_embed(tgt_in))  # (B, T, M)
        context = memory.context.unsqueeze(1).expand(-1, tgt_in.shape[1], -1)  # (B, T, Hd)
        # No input depends on an earlier output, so the RNN runs over the whole target in one call.
        out = self.run_rnn(torch.cat([emb, context], dim=-1), cache)  # (B, T, Hd)
        return self.generator(self.dropout(torch.cat([out, context, emb], dim=-1))), None


class Attention(nn.Module):
    """Scores of decoder queries against encoder states: additive (Bahdanau) or multiplicative (Luong dot, general)."""

    def __init__(self, kind: AttentionKind, size: int) -> None:
        super().__init__()
        self.kind = kind
        # Bahdanau's U_k and Luong's general W only touch encoder states: applied once per source, in keys().
        self.key_proj = None if kind == "dot" else nn.Linear(size, size, bias=kind == "bahdanau")
        if kind == "bahdanau":
            self.query_proj = nn.Linear(size, size, bias=False)  # W_q
            self.score = nn.Linear(size, 1, bias=False)  # v

    def keys(self, states: torch.Tensor) -> torch.Tensor | None:
        """Encoder states (B, S, Hd) -> keys (B, S, Hd); None for dot, which scores the states themselves."""
        return None if self.key_proj is None else self.key_proj(states)

    def forward(
        self, query: torch.Tensor, states: torch.Tensor, keys: torch.Tensor | None, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, Hd) over states (B, S, Hd) -> context (B, T, Hd), weights (B, T, S); mask (B, S) True = real."""
        keys = states if keys is None else keys
        if self.kind == "bahdanau":
            energy = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, Hd)
            scores = self.score(energy).squeeze(-1)  # (B, T, S)
        else:
            scores = query @ keys.transpose(1, 2)  # (B, T, S)
        mask, empty = open_empty_rows(mask.unsqueeze(1))  # (B, 1, S), (B, 1, 1): a source of only padding gets 0
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1).masked_fill(empty, 0.0)
        return weights @ states, weights


class Seq2SeqAttention(RNNEncoderDecoder):
    """RNN encoder-decoder whose decoder attends over every encoder state at every step.

    With attention.kind "bahdanau" (additive, Bahdanau et al. 2015) the previous decoder state queries, the context
    is fed to the RNN with the embedding, and a deep output tanh(W [state; context; embedding]) feeds the generator.
    With "dot" or "general" (Luong et al. 2015) the RNN steps first, its output queries, and the attentional vector
    tanh(W_c [context; state]) feeds the generator.
    """

    def __init__(
        self,
        config: Seq2SeqConfig,
        vocab_size: int,
        max_len: int,
        pad_id: int = PAD,
        attention: AttentionConfig = AttentionConfig(),
    ) -> None:
        super().__init__(config, vocab_size, max_len, pad_id)
        c, hd, kind = config, self.state_size, attention.kind
        self.input_feeding = attention.input_feeding
        reads_vector = kind == "bahdanau" or self.input_feeding  # the context, or the previous attentional vector
        self.decoder = recurrent(c.cell, c.embed_dim + (hd if reads_vector else 0), hd, c.num_layers, c.dropout)
        self.attention = Attention(kind, hd)
        self.output = nn.Linear(2 * hd + (c.embed_dim if kind == "bahdanau" else 0), hd)
        self.generator = nn.Linear(hd, vocab_size)

    def encode(self, src: torch.Tensor) -> RNNMemory:
        memory = super().encode(src)
        memory.keys = self.attention.keys(memory.states)
        return memory

    def init_cache(self, memory: RNNMemory) -> RNNCache:
        cache = super().init_cache(memory)
        if self.input_feeding:  # nothing attended before the first step
            cache.feed = memory.states.new_zeros(memory.states.shape[0], self.state_size)
        return cache

    def attention_weights(self, memory: RNNMemory, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced attention weights (B, T, S): where each target position looks in the source."""
        return self.unroll(memory, tgt_in, self.init_cache(memory))[1]

    def unroll(self, memory: RNNMemory, tgt_in: torch.Tensor, cache: RNNCache) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.dropout(self.tgt_embed(tgt_in))  # (B, T, M)
        if self.attention.kind != "bahdanau" and not self.input_feeding:
            # The RNN never reads attention: one call over the whole target, then every position attends at once.
            attentional, weights = self.attend_luong(self.run_rnn(emb, cache), memory)
            return self.generator(self.dropout(attentional)), weights
        steps = [self.step(memory, emb[:, t : t + 1], cache) for t in range(tgt_in.shape[1])]
        logits, weights = (torch.cat(parts, dim=1) for parts in zip(*steps, strict=True))
        return logits, weights  # (B, T, V), (B, T, S)

    def step(self, memory: RNNMemory, emb: torch.Tensor, cache: RNNCache) -> tuple[torch.Tensor, torch.Tensor]:
        """One position, advancing the cache: emb (B, 1, M) -> logits (B, 1, V), weights (B, 1, S)."""
        if self.attention.kind == "bahdanau":
            query = cache.hidden[:, -1:]  # (B, 1, Hd) previous state of the top layer
            context, weights = self.attention(query, memory.states, memory.keys, memory.mask)
            out = self.run_rnn(torch.cat([emb, context], dim=-1), cache)  # (B, 1, Hd)
            deep = torch.tanh(self.output(torch.cat([out, context, emb], dim=-1)))  # (B, 1, Hd)
            return self.generator(self.dropout(deep)), weights
        out = self.run_rnn(torch.cat([emb, cache.feed.unsqueeze(1)], dim=-1), cache)  # (B, 1, Hd)
        attentional, weights = self.attend_luong(out, memory)
        cache.feed = attentional[:, 0]
        return self.generator(self.dropout(attentional)), weights

    def attend_luong(self, out: torch.Tensor, memory: RNNMemory) -> tuple[torch.Tensor, torch.Tensor]:
        """RNN outputs (B, T, Hd) -> attentional vectors tanh(W_c [context; output]) (B, T, Hd), weights (B, T, S)."""
        context, weights = self.attention(out, memory.states, memory.keys, memory.mask)
        return torch.tanh(self.output(torch.cat([context, out], dim=-1))), weights
