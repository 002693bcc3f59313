"""Lightning callbacks: learning-rate warmup, scaling and logging, and figures written to TensorBoard and to the run
folder."""

from nlparena.callbacks.figures import AttentionMaps, ConfusionMatrices
from nlparena.callbacks.lr_monitor import StepLearningRateMonitor
from nlparena.callbacks.warmup import InverseSqrt, LinearScaling, LRFactor, Noam, SqrtScaling, Warmup

__all__ = [
    "AttentionMaps",
    "ConfusionMatrices",
    "InverseSqrt",
    "LRFactor",
    "LinearScaling",
    "Noam",
    "SqrtScaling",
    "StepLearningRateMonitor",
    "Warmup",
]
