"""GAN networks from the shared building blocks: a DCGAN-style generator and discriminator, and a U-Net
discriminator (Schönfeld et al. 2020) that reuses the diffusion U-Net.

Conditional variants: the generator concatenates a learned class embedding to z; the discriminators add a
projection term <embed(y), phi(x)> to their global logit (Miyato & Koyama 2018). Spectral normalisation
(Miyato et al. 2018) is an option for every discriminator.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nn.layers import Downsample, Upsample, group_norm
from genlab.nn.unet import UNet, level_resolutions


class GeneratorArch(StrEnum):
    """The GAN generator's architecture."""

    dcgan = "dcgan"


class DiscriminatorArch(StrEnum):
    """The GAN discriminator's architecture."""

    dcgan = "dcgan"
    unet = "unet"  # the shared U-Net: global and per-pixel real/fake logits (Schönfeld et al. 2020)


class DiscriminatorOutput(NamedTuple):
    """What every discriminator returns."""

    logits: Tensor  # global real/fake logit [B]
    features: Tensor  # pooled features phi(x) [B, C], used by the projection term and by GAN inversion
    pixel_logits: Tensor | None = None  # per-pixel logits [B, 1, H, W] (U-Net discriminator only)


def _start_resolution(resolution: int, channel_mult: Sequence[int]) -> int:
    """The generator's first feature-map size: the coarsest level of the matching U-Net."""
    return level_resolutions(resolution, channel_mult)[-1]


class DCGANGenerator(nn.Module):
    """z [B, latent_dim] (and labels) -> images [B, C, H, W] in (-1, 1).

    A linear layer makes a coarse map at resolution / 2**(levels - 1); each finer level doubles it (nearest
    neighbour and a 3x3 convolution, the U-Net's Upsample) and changes the width with a 3x3 convolution. GroupNorm
    instead of DCGAN's BatchNorm: the output of one z does not depend on the rest of the batch, and an eval-mode
    (EMA) generator samples exactly as in training.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        out_channels: int,
        resolution: int,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or base_channels < 1:
            raise ValueError(f"latent_dim={latent_dim} and base_channels={base_channels} must be >= 1")
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.start = _start_resolution(resolution, channel_mult)
        widths = [base_channels * m for m in reversed(channel_mult)]  # coarse to fine
        self.class_embed = nn.Embedding(num_classes, latent_dim) if num_classes is not None else None
        in_dim = 2 * latent_dim if num_classes is not None else latent_dim
        self.fc = nn.Linear(in_dim, widths[0] * self.start * self.start)
        self.widths = widths
        blocks: list[nn.Module] = []
        for i, width in enumerate(widths):
            prev = widths[i - 1] if i > 0 else widths[0]
            layers: list[nn.Module] = [group_norm(prev), nn.ReLU()]
            if i > 0:
                layers.append(Upsample(prev))
            layers.append(nn.Conv2d(prev, width, 3, padding=1))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Sequential(group_norm(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], out_channels, 3, padding=1))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Map z [B, latent_dim] (labels y [B] for a conditional generator) to [B, C, H, W] in (-1, 1)."""
        if self.class_embed is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass labels y")
            z = torch.cat([z, self.class_embed(y)], dim=1)  # [B, 2 * latent_dim]
        elif y is not None:
            raise ValueError("this generator is unconditional but got labels y")
        h = self.fc(z).reshape(z.shape[0], self.widths[0], self.start, self.start)  # [B, C0, s, s]
        return torch.tanh(self.out(self.blocks(h)))


class ProjectionHead(nn.Module):
    """Global logit psi(phi) + <embed(y), phi> (the projection discriminator); psi(phi) alone without classes."""

    def __init__(self, channels: int, num_classes: int | None) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, 1)
        self.class_embed = nn.Embedding(num_classes, channels) if num_classes is not None else None

    def forward(self, features: Tensor, y: Tensor | None) -> Tensor:
        """Logits [B] from pooled features [B, C] and labels [B]."""
        logits = self.linear(features).squeeze(1)  # [B, 1] -> [B]
        if self.class_embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass labels y")
            logits = logits + (self.class_embed(y) * features).sum(dim=1)
        elif y is not None:
            raise ValueError("this discriminator is unconditional but got labels y")
        return logits


class DCGANDiscriminator(nn.Module):
    """Images [B, C, H, W] -> DiscriminatorOutput: 3x3 convolutions with LeakyReLU(0.2), halving the resolution
    per level with the U-Net's stride-2 Downsample, then global sum pooling and the (projection) head.

    No normalisation layers: batch statistics would couple real and fake samples and break the gradient penalties,
    which are defined per sample (WGAN-GP, R1). Spectral normalisation is applied from outside (see `spectral_norm`).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        resolution: int,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        level_resolutions(resolution, channel_mult)  # same shape check as the U-Net
        widths = [base_channels * m for m in channel_mult]  # fine to coarse
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for i, width in enumerate(widths):
            prev = widths[i - 1] if i > 0 else widths[0]
            if i > 0:
                layers += [Downsample(prev), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(prev, width, 3, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = ProjectionHead(widths[-1], num_classes)

    def forward(self, x: Tensor, y: Tensor | None = None) -> DiscriminatorOutput:
        """Score x [B, C, H, W] (labels y [B] for a conditional discriminator)."""
        # Sum pooling (SNGAN): the logit scales with the feature map, as with DCGAN's flatten-and-linear.
        features = self.body(x).sum(dim=(2, 3))  # [B, C]
        return DiscriminatorOutput(self.head(features, y), features)


class UNetDiscriminator(nn.Module):
    """The shared U-Net as a discriminator (Schönfeld et al. 2020): the encoder's middle features give a global
    logit, the decoder gives one logit per pixel. The timestep input is fixed to 0 (no diffusion here)."""

    def __init__(
        self,
        *,
        in_channels: int,
        resolution: int,
        base_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.unet = UNet(
            in_channels=in_channels,
            out_channels=1,
            resolution=resolution,
            base_channels=base_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attention_resolutions=(),
            dropout=0.0,
        )
        # The U-Net zero-initialises its residual branches and output (right for diffusion). A discriminator that
        # starts as a constant gives the generator no signal, and spectral norm cannot normalise a zero matrix.
        for module in self.unet.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not module.weight.any():
                module.reset_parameters()
        self.head = ProjectionHead(self.unet.encoder.out_channels, num_classes)

    def forward(self, x: Tensor, y: Tensor | None = None) -> DiscriminatorOutput:
        """Score x [B, C, H, W] globally and per pixel."""
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        encoded = self.unet.encoder(x, t)
        features = F.silu(encoded.h).sum(dim=(2, 3))  # [B, C_mid]
        pixel_logits = self.unet.decode(encoded)  # [B, 1, H, W]
        return DiscriminatorOutput(self.head(features, y), features, pixel_logits)


def spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise every convolution, linear and embedding weight of `module` in place (Miyato et al.)."""
    for child in list(module.modules()):
        if isinstance(child, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(child)
    return module
