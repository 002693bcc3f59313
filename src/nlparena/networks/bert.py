"""BERT (Devlin et al. 2019): a post-norm Transformer encoder with MLM + NSP pre-training heads and a classifier.

Shapes: B batch, S sequence length, D d_model, V vocabulary, N masked positions, C classes.
Segment ids say which sentence of a pair a token is in: 0 for "[CLS] A [SEP]", 1 for "B [SEP]".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import nn

from nlparena.data.vocab import PAD
from nlparena.errors import ConfigError
from nlparena.networks.layers import (
    AttentionStackConfig,
    Dropout,
    check_choice,
    check_sizes,
    padding_mask,
)
from nlparena.networks.positions import LearnedPositions
from nlparena.networks.transformer import EncoderLayer

Pooling = Literal["pooler", "cls", "mean"]
POOLINGS = get_args(Pooling)


@dataclass(frozen=True)
class BertConfig(AttentionStackConfig):
    """BERT's sizes: `model.bert.*` in a config, the same for pre-training and for the classifier fine-tuned from it.

    d_model is BERT's hidden_size, d_ff its intermediate_size; dropout also acts before the classifier.
    """

    group: ClassVar[str] = "bert"

    num_layers: int = 2
    """post-norm encoder layers"""
    num_segments: int = 2
    """segment (sentence A / B) embeddings (BERT's type_vocab_size)"""
    layer_norm_eps: float = 1e-12
    """epsilon of every LayerNorm (BERT's; PyTorch's default is 1e-5)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sizes(self.group, num_layers=self.num_layers, num_segments=self.num_segments)
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"model.{self.group}.layer_norm_eps={self.layer_norm_eps}: must be above 0")


def init_bert_weights(module: nn.Module) -> None:
    """BERT's initialisation, for `Module.apply`: normal(0, 0.02) weights, zero biases, a zero PAD embedding."""
    # LayerNorm keeps PyTorch's default (weight 1, bias 0), which is also BERT's.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


class BertEmbeddings(nn.Module):
    """Token + learned position + segment embeddings, summed, then LayerNorm and dropout (no sqrt(D) scale)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int,
        num_segments: int = 2,
        dropout: float = 0.0,
        pad_id: int = PAD,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.positions = LearnedPositions(d_model, max_len)  # refuses sequences longer than max_len
        self.segments = nn.Embedding(num_segments, d_model)
        self.norm = nn.LayerNorm(d_model, layer_norm_eps)
        self.dropout = Dropout(dropout)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """ids, segments (B, S) -> (B, S, D)."""
        x = self.tokens(ids) + self.positions(ids.shape[1]) + self.segments(segments)
        return self.dropout(self.norm(x))


class Bert(nn.Module):
    """BERT encoder: embeddings, post-norm encoder layers, and the pooler (dense + tanh on [CLS]) that NSP trains.

    Args:
        max_len: size of the positional table; longer sequences are refused.
    """

    def __init__(self, config: BertConfig, vocab_size: int, max_len: int, pad_id: int = PAD) -> None:
        super().__init__()
        c = self.config = config
        self.pad_id = pad_id
        eps = c.layer_norm_eps
        self.embeddings = BertEmbeddings(vocab_size, c.d_model, max_len, c.num_segments, c.dropout, pad_id, eps)
        # BERT is post-norm: each residual block ends in a LayerNorm, so the stack needs no final one.
        layer_args = (c.d_model, c.n_heads, c.d_ff, c.dropout, False, eps, False)  # no dropout inside the FF block
        self.layers = nn.ModuleList(EncoderLayer(*layer_args) for _ in range(c.num_layers))
        self.pooler = nn.Linear(c.d_model, c.d_model)  # inside Bert, so that a pre-trained pooler transfers with it
        self.apply(init_bert_weights)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, S), segments (B, S) or None for a single sentence (all 0) -> states (B, S, D)."""
        mask = padding_mask(ids, self.pad_id)  # (B, S) True for real tokens (None if all are): none attends to PAD
        x = self.embeddings(ids, torch.zeros_like(ids) if segments is None else segments)
        for layer in self.layers:
            x = layer(x, mask)
        return x

    def pool(self, states: torch.Tensor) -> torch.Tensor:
        """BERT's pooled output: tanh(W h_CLS + b) of the first token's final state, (B, S, D) -> (B, D)."""
        return torch.tanh(self.pooler(states[:, 0]))


class MaskedLMHead(nn.Module):
    """Dense -> GELU -> LayerNorm, then a decoder whose weight is the token embedding matrix, plus its own bias."""

    def __init__(
        self, d_model: int, vocab_size: int, token_embedding: nn.Embedding, layer_norm_eps: float = 1e-12
    ) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(d_model, layer_norm_eps)
        self.decoder = nn.Linear(d_model, vocab_size)
        self.apply(init_bert_weights)  # before tying, so that the embedding (and its zero PAD row) is left as it is
        self.decoder.weight = token_embedding.weight  # (V, D): one Parameter, trained by both ends

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V): every position of (B, S, D), or only the masked ones of (N, D)."""
        return self.decoder(self.norm(self.activation(self.dense(states))))


class BertForPretraining(nn.Module):
    """BERT with its pre-training heads: masked-token prediction (MLM) and next-sentence prediction (NSP) on the pooler.

    Args as in Bert.
    """

    def __init__(self, config: BertConfig, vocab_size: int, max_len: int, pad_id: int = PAD) -> None:
        super().__init__()
        self.bert = Bert(config, vocab_size, max_len, pad_id)
        self.mlm = MaskedLMHead(config.d_model, vocab_size, self.bert.embeddings.tokens, config.layer_norm_eps)
        self.nsp = nn.Linear(config.d_model, 2)
        init_bert_weights(self.nsp)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, segments (B, S) -> MLM logits (B, S, V) at every position, NSP logits (B, 2)."""
        states = self.bert(ids, segments)
        return self.mlm(states), self.nsp_logits(states)

    def mlm_logits_at(self, states: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """MLM logits only where masked (B, S) is True: (N, V), in the order of `targets[masked]`.

        The V-wide decoder is the costliest layer of a small BERT; running it on ~15% of the positions saves most of it.
        """
        return self.mlm(states[masked])  # states[masked]: (N, D)

    def nsp_logits(self, states: torch.Tensor) -> torch.Tensor:
        """States (B, S, D) -> is-next-sentence logits (B, 2), from the pooled [CLS] state."""
        return self.nsp(self.bert.pool(states))


class BertForClassification(nn.Module):
    """BERT with a linear classifier on one vector per sequence; `bert` loads the state dict of BertForPretraining.bert.

    Args:
        num_classes: at least 2.
        pooling: the vector the classifier reads. "pooler": BERT's dense + tanh on [CLS], pre-trained by NSP;
            "cls": the [CLS] final state itself; "mean": the mean final state over real (non-PAD) tokens.
        Others as in Bert.
    """

    def __init__(
        self, config: BertConfig, vocab_size: int, max_len: int, num_classes: int, pooling: Pooling, pad_id: int = PAD
    ) -> None:
        super().__init__()
        check_choice("model.pooling", pooling, POOLINGS)
        if num_classes < 2:
            raise ConfigError(f"model.num_classes={num_classes}: must be at least 2")
        self.pooling = pooling
        self.bert = Bert(config, vocab_size, max_len, pad_id)
        # An unread pooler would get no gradient, which DDP refuses; frozen, it stays in the state dict all the same.
        self.bert.pooler.requires_grad_(pooling == "pooler")
        self.dropout = Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_classes)
        init_bert_weights(self.classifier)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """ids, segments (B, S) -> logits (B, C)."""
        return self.classifier(self.dropout(self.summary(ids, self.bert(ids, segments))))

    def summary(self, ids: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The vector per sequence that the classifier reads, chosen by `pooling`: (B, S, D) -> (B, D)."""
        if self.pooling == "pooler":
            return self.bert.pool(states)
        if self.pooling == "cls":
            return states[:, 0]
        real = (ids != self.bert.pad_id).unsqueeze(-1).to(states.dtype)  # (B, S, 1)
        return (states * real).sum(1) / real.sum(1).clamp(min=1)


# Hugging Face `BertForPreTraining` / `BertModel` parameter names -> ours (`BertForPretraining`), per tensor. The
# query, key and value projections are concatenated into `in_proj` (see MultiHeadAttention).
HF_NAMES = {
    "embeddings.word_embeddings": "bert.embeddings.tokens",
    "embeddings.position_embeddings": "bert.embeddings.positions.table",
    "embeddings.token_type_embeddings": "bert.embeddings.segments",
    "embeddings.LayerNorm": "bert.embeddings.norm",
    "pooler.dense": "bert.pooler",
    "cls.predictions.transform.dense": "mlm.dense",
    "cls.predictions.transform.LayerNorm": "mlm.norm",
    "cls.seq_relationship": "nsp",
}
HF_LAYER_NAMES = {
    "attention.output.dense": "attn.out_proj",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "ff.0",
    "output.dense": "ff.3",
    "output.LayerNorm": "norm2",
}


def state_from_hugging_face(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face BERT state dict (with or without the `bert.` prefix and the pre-training heads) as a
    `BertForPretraining` state dict; tensors it has no place for (`position_ids`) are left out."""
    hf = {key.removeprefix("bert."): value for key, value in hf.items()}
    ours: dict[str, torch.Tensor] = {}
    for key, value in hf.items():
        stem, _, kind = key.rpartition(".")  # kind: weight, bias, gamma, beta
        kind = {"gamma": "weight", "beta": "bias"}.get(kind, kind)
        if stem in HF_NAMES:
            ours[f"{HF_NAMES[stem]}.{kind}"] = value
        elif stem.startswith("encoder.layer."):
            index, _, part = stem.removeprefix("encoder.layer.").partition(".")
            if part in HF_LAYER_NAMES:
                ours[f"bert.layers.{index}.{HF_LAYER_NAMES[part]}.{kind}"] = value
            elif part == "attention.self.query":
                prefix = f"encoder.layer.{index}.attention.self."
                ours[f"bert.layers.{index}.attn.in_proj.{kind}"] = torch.cat(
                    [hf[f"{prefix}{name}.{kind}"] for name in ("query", "key", "value")]
                )
        elif key in ("cls.predictions.bias", "cls.predictions.decoder.bias"):
            ours["mlm.decoder.bias"] = value
    if "bert.embeddings.tokens.weight" in ours and "mlm.dense.weight" in ours:
        ours["mlm.decoder.weight"] = ours["bert.embeddings.tokens.weight"]  # tied, as in both models
    return ours
