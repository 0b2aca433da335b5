"""Thin LightningModules over the plain networks and the diffusion math."""

from genlab.models.classifier import ClassifierModule
from genlab.models.diffusion import DiffusionModule

__all__ = ["ClassifierModule", "DiffusionModule"]
