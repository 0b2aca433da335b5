"""Callbacks that show training as it happens: sample grids, class accuracy and loss curves."""

from genlab.training.callbacks.class_accuracy import ClassAccuracy
from genlab.training.callbacks.final_checkpoint import FinalCheckpoint
from genlab.training.callbacks.loss_curve import LossCurve
from genlab.training.callbacks.progress import ProgressBar
from genlab.training.callbacks.sample_grid import SampleGrid

__all__ = ["ClassAccuracy", "FinalCheckpoint", "LossCurve", "ProgressBar", "SampleGrid"]
