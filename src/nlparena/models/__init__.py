"""LightningModules that users pick by name (`--model Transformer`)."""

from nlparena.models.translation import Transformer, TranslationModel

__all__ = ["Transformer", "TranslationModel"]
