"""One registry of model kinds: what `model.kind` builds, and what each kind can do.

Every dispatch on the kind of a model (training, loading a checkpoint, sampling, inversion, evaluation, the loss-curve
panels) reads this table instead of testing class names or attributes. A new kind registers here in one entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L

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
        Panel("epsilon-MSE loss", ("train/loss", "val/loss"), "log"),
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
    """What one model kind is and supports."""

    module: type[L.LightningModule]
    generates: bool  # samples images: sample grids, FID, `genlab sample` / `eval` / `table`
    description: str
    panels: tuple[Panel, ...]  # what the loss-curve PNG plots


MODEL_KINDS: dict[str, ModelKindInfo] = {
    "ddpm": ModelKindInfo(DiffusionModule, generates=True,
                          description="a diffusion model (DDPM, or CFG with model.conditional=true)", panels=PANELS["ddpm"]),
    "gan": ModelKindInfo(GANModule, generates=True, description="a GAN generator", panels=PANELS["gan"]),
    "classifier": ModelKindInfo(ClassifierModule, generates=False,
                                description="a noise-aware classifier", panels=PANELS["classifier"]),
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


def build_module(config: dict[str, Any]) -> L.LightningModule:
    """The LightningModule for the config's `model.kind`, built from the plain config dict (checkpoints rebuild it)."""
    return kind_info(str(config["model"]["kind"])).module(config)


def is_diffusion(module: L.LightningModule) -> bool:
    """True for a diffusion model: it has a sampler, guidance, a likelihood and DDIM inversion."""
    return isinstance(module, DiffusionModule)


def generator_kinds() -> list[str]:
    """The kinds that generate images."""
    return [kind for kind, info in MODEL_KINDS.items() if info.generates]
