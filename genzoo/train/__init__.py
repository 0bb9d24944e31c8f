"""One training loop for every family, and its callbacks."""

from .callbacks import Callback, Checkpoint, DivergenceGuard, MetricsLogger, ProgressBar, SampleGrid
from .loop import TrainState, fit

__all__ = ["Callback", "Checkpoint", "DivergenceGuard", "MetricsLogger", "ProgressBar", "SampleGrid", "TrainState", "fit"]
