"""LightningModules that users pick by name (`--model Transformer`)."""

from nlparena.models.base import ArenaModel
from nlparena.models.classification import BertClassifier, ClassificationModel, RNNClassifier
from nlparena.models.pretraining import BertPretraining
from nlparena.models.translation import Seq2Seq, Seq2SeqAttention, Transformer, TranslationModel

__all__ = [
    "ArenaModel",
    "BertClassifier",
    "BertPretraining",
    "ClassificationModel",
    "RNNClassifier",
    "Seq2Seq",
    "Seq2SeqAttention",
    "Transformer",
    "TranslationModel",
]
