"""LightningModules that users pick by name (`--model Transformer`)."""

from nlparena.models.base import ArenaModel
from nlparena.models.classification import BertClassifier, ClassificationModel, DecoderOnlyClassifier, RNNClassifier
from nlparena.models.pretraining import BertPretraining
from nlparena.models.translation import DecoderOnly, Seq2Seq, Seq2SeqAttention, Transformer, TranslationModel

__all__ = [
    "ArenaModel",
    "BertClassifier",
    "BertPretraining",
    "ClassificationModel",
    "DecoderOnly",
    "DecoderOnlyClassifier",
    "RNNClassifier",
    "Seq2Seq",
    "Seq2SeqAttention",
    "Transformer",
    "TranslationModel",
]
