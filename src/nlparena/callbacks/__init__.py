"""Lightning callbacks: figures written to TensorBoard and to the run folder."""

from nlparena.callbacks.figures import AttentionMaps

__all__ = ["AttentionMaps"]
