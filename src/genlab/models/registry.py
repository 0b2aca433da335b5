"""One registry of model kinds: what `model.kind` builds, and what each kind can do.

Every dispatch on the kind of a model (training, loading a checkpoint, sampling, inversion, evaluation, the loss-curve
panels) reads this table, or the facts it holds (config/kinds.py), instead of testing names, classes or attributes. A
new kind is one entry here and its facts there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L

from genlab.config import KINDS, KindFacts, kinds_where
from genlab.errors import GenlabError
from genlab.models.classifier import ClassifierModule
from genlab.models.diffusion import DiffusionModule
from genlab.models.gan import GANModule


@dataclass(frozen=True)
class Panel:
    """One plot: the logged keys it shows (a trailing * matches a prefix) and its y scale."""

    title: str
    keys: tuple[str, ...]
    yscale: str = "linear"

    def matches(self, key: str) -> bool:
        return any(key.startswith(k[:-1]) if k.endswith("*") else key == k for k in self.keys)


# What each model kind plots. GAN panels show the phases of adversarial training: D(x) and D(G(z)) drifting apart
# or oscillating, gradient norms exploding, diversity collapsing.
PANELS: dict[str, tuple[Panel, ...]] = {
    "ddpm": (
        Panel("loss (MSE of the network's target)", ("train/loss", "val/loss"), "log"),
        Panel("train loss per quarter of [0, T)", ("train/loss_q*",), "log"),
    ),
    "classifier": (
        Panel("cross-entropy on x_t", ("train/loss", "val/loss"), "log"),
        Panel("accuracy per quarter of [0, T)", ("val/acc_q*", "val/acc_t0")),
    ),
    "gan": (
        Panel("losses", ("train/d_loss", "train/g_loss")),
        Panel("mean logits D(x), D(G(z))", ("train/d_real", "train/d_fake")),
        Panel("gradient norms", ("train/d_grad_norm", "train/g_grad_norm"), "log"),
        Panel("penalties and diversity", ("train/d_gp", "train/d_r1", "train/diversity", "val/diversity")),
    ),
}


@dataclass(frozen=True)
class ModelKindInfo:
    """What one model kind is and supports: its facts (config/kinds.py), its LightningModule and its plots."""

    facts: KindFacts
    module: type[L.LightningModule]
    panels: tuple[Panel, ...]  # what the loss-curve PNG plots

    @property
    def generates(self) -> bool:
        """It samples images: sample grids, FID, `genlab sample` / `eval` / `table`."""
        return self.facts.generates

    @property
    def description(self) -> str:
        return self.facts.description


MODEL_KINDS: dict[str, ModelKindInfo] = {
    "ddpm": ModelKindInfo(KINDS["ddpm"], DiffusionModule, PANELS["ddpm"]),
    "gan": ModelKindInfo(KINDS["gan"], GANModule, PANELS["gan"]),
    "classifier": ModelKindInfo(KINDS["classifier"], ClassifierModule, PANELS["classifier"]),
}


def kind_info(kind: str) -> ModelKindInfo:
    """The registry entry of `kind`, or a GenlabError listing the kinds."""
    if kind not in MODEL_KINDS:
        raise GenlabError(f"unknown model kind {kind!r}: genlab knows {', '.join(MODEL_KINDS)}.")
    return MODEL_KINDS[kind]


def kind_of(module: L.LightningModule) -> str:
    """The model kind of a built module."""
    for kind, info in MODEL_KINDS.items():
        if type(module) is info.module:
            return kind
    raise GenlabError(f"{type(module).__name__} is not a registered genlab model kind.")


def facts_of(module: L.LightningModule) -> KindFacts:
    """What the kind of a built module does (samples through a sampler, classifies, ...)."""
    return kind_info(kind_of(module)).facts


def build_module(config: dict[str, Any]) -> L.LightningModule:
    """The LightningModule for the config's `model.kind`, built from the plain config dict (checkpoints rebuild it)."""
    return kind_info(str(config["model"]["kind"])).module(config)


def generator_kinds() -> list[str]:
    """The kinds that generate images."""
    return kinds_where("generates")
