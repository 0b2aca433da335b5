"""Callbacks that show training as it happens: sample grids and loss curves."""

from genlab.callbacks.loss_curve import LossCurve
from genlab.callbacks.sample_grid import SampleGrid

__all__ = ["LossCurve", "SampleGrid"]
