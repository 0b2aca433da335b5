"""Explicit factories from a typed config to objects (DataModule, networks, diffusion process, device): no class
paths in YAML."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from genlab.data import DATAMODULES
from genlab.data.base import ImageDataModule
from genlab.diffusion import PROCESSES, FlowMatching, GaussianDiffusion
from genlab.errors import GenlabError
from genlab.nn import NoiseAwareClassifier, UNet
from genlab.nn.gan import DCGANDiscriminator, DCGANGenerator, UNetDiscriminator, spectral_norm


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    """The DataModule named by `data.name`, with the dataset's own defaults where the config says null."""
    data = cfg.data
    kwargs = dict(
        root=data.root or "data",
        download=data.download,
        resolution=data.resolution,
        channels=data.channels,
        hflip=data.hflip,
        batch_size=data.batch_size,
        num_workers=data.num_workers,
        val_fraction=data.val_fraction,
        seed=cfg.seed,
        pin_memory=data.pin_memory,
        persistent_workers=data.persistent_workers,
    )
    if data.fit is not None:
        kwargs["fit"] = str(data.fit)
    return DATAMODULES[str(data.name)](**kwargs)


def resolve_data_keys(cfg: DictConfig, datamodule: ImageDataModule) -> None:
    """Write what the dataset decides (channels, classes) into the config, so the saved config is complete."""
    cfg.data.channels = datamodule.channels
    cfg.data.resolution = datamodule.resolution
    cfg.data.num_classes = datamodule.num_classes


def is_conditional(cfg: DictConfig) -> bool:
    """Labels reach the U-Net; p_uncond = 1 would drop them all, which is an unconditional model."""
    return bool(cfg.model.conditional) and cfg.model.p_uncond < 1.0


def _network_kwargs(cfg: DictConfig) -> dict:
    """U-Net settings shared by the U-Net and the classifier's encoder half, for the data's shape."""
    u = cfg.unet
    return dict(
        in_channels=cfg.data.channels,
        resolution=cfg.data.resolution,
        base_channels=u.base_channels,
        channel_mult=tuple(u.channel_mult),
        num_res_blocks=u.num_res_blocks,
        attention_resolutions=tuple(u.attention_resolutions),
        dropout=u.dropout,
        num_heads=u.num_heads,
        time_injection=u.time_injection,
    )


def _shape_error(cfg: DictConfig, what: str, exc: ValueError) -> GenlabError:
    # The networks' own checks, e.g. attention at a resolution the U-Net never reaches.
    return GenlabError(f"invalid {what} config for {cfg.data.resolution}x{cfg.data.resolution} data: {exc}.")


def build_unet(cfg: DictConfig) -> UNet:
    """The shared U-Net for the data's channels and resolution; class-conditional when model.conditional."""
    try:
        return UNet(**_network_kwargs(cfg), num_classes=cfg.data.num_classes if is_conditional(cfg) else None)
    except ValueError as exc:
        raise _shape_error(cfg, "unet", exc) from None


def build_diffusion(cfg: DictConfig) -> GaussianDiffusion | FlowMatching:
    """The config's objective: the Gaussian diffusion process (schedule buffers and loss), or flow matching."""
    return PROCESSES[str(cfg.diffusion.process)].from_config(cfg.diffusion)


def build_classifier(cfg: DictConfig) -> NoiseAwareClassifier:
    """The noise-aware classifier: the U-Net encoder (the `unet` block's settings) and a pooling head."""
    try:
        return NoiseAwareClassifier(
            **_network_kwargs(cfg), num_classes=cfg.data.num_classes, pool=cfg.model.classifier_pool
        )
    except ValueError as exc:
        raise _shape_error(cfg, "classifier", exc) from None


def _gan_classes(cfg: DictConfig) -> int | None:
    return cfg.data.num_classes if cfg.model.conditional else None


def build_generator(cfg: DictConfig) -> DCGANGenerator:
    """The GAN generator of the `gan` block, class-conditional when model.conditional."""
    g = cfg.gan
    try:
        return DCGANGenerator(
            latent_dim=g.latent_dim,
            out_channels=cfg.data.channels,
            resolution=cfg.data.resolution,
            base_channels=g.g_channels,
            channel_mult=tuple(g.channel_mult),
            num_classes=_gan_classes(cfg),
        )
    except ValueError as exc:
        raise _shape_error(cfg, "gan generator", exc) from None


def build_discriminator(cfg: DictConfig) -> nn.Module:
    """The GAN discriminator (DCGAN or U-Net) of the `gan` block, with spectral norm when gan.spectral_norm."""
    g = cfg.gan
    kwargs = dict(
        in_channels=cfg.data.channels,
        resolution=cfg.data.resolution,
        base_channels=g.d_channels,
        channel_mult=tuple(g.channel_mult),
        num_classes=_gan_classes(cfg),
    )
    try:
        if g.discriminator == "unet":
            net: nn.Module = UNetDiscriminator(**kwargs, num_res_blocks=g.d_num_res_blocks)
        else:
            net = DCGANDiscriminator(**kwargs)
    except ValueError as exc:
        raise _shape_error(cfg, "gan discriminator", exc) from None
    return spectral_norm(net) if g.spectral_norm else net


def pick_device(name: str) -> torch.device:
    """A command's device= argument: "auto" is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
