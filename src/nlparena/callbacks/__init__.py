"""Lightning callbacks: learning-rate warmup, scaling and logging, figures written to TensorBoard and to the run
folder, the guards of a run (stop on a non-finite loss, random states in checkpoints), every test example's
output."""

from nlparena.callbacks.figures import AttentionMaps, ConfusionMatrices
from nlparena.callbacks.lr_monitor import StepLearningRateMonitor
from nlparena.callbacks.non_finite import NonFiniteGuard
from nlparena.callbacks.random_state import RandomState
from nlparena.callbacks.test_outputs import TestOutputs
from nlparena.callbacks.warmup import InverseSqrt, LinearScaling, LRFactor, Noam, SqrtScaling, Warmup

__all__ = [
    "AttentionMaps",
    "ConfusionMatrices",
    "InverseSqrt",
    "LRFactor",
    "LinearScaling",
    "Noam",
    "NonFiniteGuard",
    "RandomState",
    "SqrtScaling",
    "StepLearningRateMonitor",
    "TestOutputs",
    "Warmup",
]
