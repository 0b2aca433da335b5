"""Thin LightningModules over the plain networks and the diffusion math, and the registry of model kinds."""

from genlab.models.classifier import ClassifierModule
from genlab.models.diffusion import DiffusionModule
from genlab.models.gan import GANModule
from genlab.models.registry import MODEL_KINDS, build_module, facts_of, generator_kinds, kind_info, kind_of

__all__ = [
    "MODEL_KINDS",
    "ClassifierModule",
    "DiffusionModule",
    "GANModule",
    "build_module",
    "facts_of",
    "generator_kinds",
    "kind_info",
    "kind_of",
]
