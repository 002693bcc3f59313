"""RNNClassifier: a bidirectional GRU/LSTM with attention pooling, the RNN side of the classification comparison.

Shapes: B batch, S sequence length, C classes, Hd = hidden_size * directions: the width of the encoder outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.networks.layers import Dropout, open_empty_rows
from nlparena.networks.rnn import RNNConfig, RNNEncoder


class AttentionPooling(nn.Module):
    """Weighted sum of states, scored v^T tanh(W h_j + b) against a learned v (Yang et al. 2016, Lin et al. 2017)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)  # W, b
        self.score = nn.Linear(size, 1, bias=False)  # v: a learned query, "which tokens decide the class"

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, S, Hd), mask (B, S) True for real tokens -> pooled (B, Hd), weights (B, S), 0 on PAD."""
        scores = self.score(torch.tanh(self.proj(states))).squeeze(-1)  # (B, S)
        attends, empty = open_empty_rows(mask)  # a row of only padding: weights 0, not a softmax over no token
        weights = scores.masked_fill(~attends, float("-inf")).softmax(dim=-1).masked_fill(empty, 0.0)
        return (weights.unsqueeze(1) @ states).squeeze(1), weights  # (B, 1, S) @ (B, S, Hd) -> (B, Hd)


class RNNClassifier(nn.Module):
    """GRU/LSTM (bidirectional by default) over packed sequences, attention pooling of its states, dropout, a linear
    classifier.

    Args:
        max_len: kept for the interface shared with BertForClassification; an RNN has no positional table.
    """

    def __init__(self, config: RNNConfig, vocab_size: int, max_len: int, num_classes: int, pad_id: int = PAD) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"model.num_classes={num_classes}: must be at least 2")
        self.pad_id, self.max_len = pad_id, max_len
        self.encoder = RNNEncoder(config, vocab_size, pad_id)
        self.pooling = AttentionPooling(config.state_size)
        self.dropout = Dropout(config.dropout)
        self.classifier = nn.Linear(config.state_size, num_classes)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, S) -> logits (B, C).

        `segments` is accepted so that every classifier is called alike, and ignored: the RNN reads a pair's
        boundary from its SEP token.
        """
        pooled, _ = self.attend(ids)
        return self.classifier(self.dropout(pooled))

    def attention_weights(self, ids: torch.Tensor) -> torch.Tensor:
        """How much each token counts in the pooled vector: (B, S), summing to 1 over real tokens, 0 on PAD."""
        return self.attend(ids)[1]

    def attend(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, S) -> pooled encoder states (B, Hd) and their attention weights (B, S)."""
        states, _, _ = self.encoder(ids)  # (B, S, Hd), 0 at PAD
        return self.pooling(states, ids != self.pad_id)
