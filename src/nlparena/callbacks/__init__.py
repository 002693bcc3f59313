"""Lightning callbacks: figures written to TensorBoard and to the run folder."""

from nlparena.callbacks.figures import AttentionMaps, ConfusionMatrices

__all__ = ["AttentionMaps", "ConfusionMatrices"]
