"""Thin LightningModules over the plain networks and the diffusion math."""

from genlab.models.diffusion import DiffusionModule

__all__ = ["DiffusionModule"]
