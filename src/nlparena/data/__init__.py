"""Synthetic data: pure generators and the LightningDataModules built on them."""

from nlparena.data.translation import Copy, LanguagePair, Reverse, Sort, TranslationDataModule

__all__ = ["Copy", "LanguagePair", "Reverse", "Sort", "TranslationDataModule"]
