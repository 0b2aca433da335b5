"""Callbacks that show training as it happens: sample grids, class accuracy and loss curves."""

from genlab.callbacks.class_accuracy import ClassAccuracy
from genlab.callbacks.final_checkpoint import FinalCheckpoint
from genlab.callbacks.loss_curve import LossCurve
from genlab.callbacks.progress import ProgressBar
from genlab.callbacks.sample_grid import SampleGrid

__all__ = ["ClassAccuracy", "FinalCheckpoint", "LossCurve", "ProgressBar", "SampleGrid"]
