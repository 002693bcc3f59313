"""Lightning callbacks: learning-rate warmup and scaling, and figures written to TensorBoard and to the run folder."""

from nlparena.callbacks.figures import AttentionMaps, ConfusionMatrices
from nlparena.callbacks.warmup import InverseSqrt, LinearScaling, LRFactor, Noam, Warmup

__all__ = ["AttentionMaps", "ConfusionMatrices", "InverseSqrt", "LRFactor", "LinearScaling", "Noam", "Warmup"]
