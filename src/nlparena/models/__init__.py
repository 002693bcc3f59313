"""LightningModules that users pick by name (`--model Transformer`)."""

from nlparena.models.translation import Seq2Seq, Seq2SeqAttention, Transformer, TranslationModel

__all__ = ["Seq2Seq", "Seq2SeqAttention", "Transformer", "TranslationModel"]
