"""Synthetic data (pure generators and the LightningDataModules built on them) and users' own text files."""

from nlparena.data.classification import ClassificationDataModule, Sentiment, SentimentPair
from nlparena.data.pretraining import Pretraining
from nlparena.data.splits import SplitDataModule
from nlparena.data.text_classification import TextClassification
from nlparena.data.text_corpus import TextCorpus
from nlparena.data.text_data import TextDataModule
from nlparena.data.text_pair import TextPair
from nlparena.data.text_tokenizer import TextTokenizer, TokenizerConfig
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
    "TextClassification",
    "TextCorpus",
    "TextDataModule",
    "TextPair",
    "TextTokenizer",
    "TokenizerConfig",
    "TranslationDataModule",
]
