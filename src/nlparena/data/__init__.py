"""Synthetic data: pure generators and the LightningDataModules built on them."""

from nlparena.data.classification import ClassificationDataModule, Sentiment, SentimentPair
from nlparena.data.pretraining import Pretraining
from nlparena.data.splits import SplitDataModule
from nlparena.data.translation import Copy, LanguagePair, Reverse, Sort, TranslationDataModule

__all__ = [
    "ClassificationDataModule",
    "Copy",
    "LanguagePair",
    "Pretraining",
    "Reverse",
    "Sentiment",
    "SentimentPair",
    "Sort",
    "SplitDataModule",
    "TranslationDataModule",
]
