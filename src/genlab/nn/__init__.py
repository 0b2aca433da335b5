"""Plain torch networks (no Lightning): U-Net building blocks and the DDPM U-Net."""
from genlab.nn.classifier import POOLS, AttentionPool2d, NoiseAwareClassifier, Pool
from genlab.nn.layers import (
    TIME_INJECTIONS,
    AttentionBlock,
    Downsample,
    ResBlock,
    TimeInjection,
    Upsample,
    group_norm,
    sinusoidal_embedding,
    zero_init,
)
from genlab.nn.unet import UNet, UNetEncoder, UNetFeatures, level_resolutions

__all__ = [
    "TIME_INJECTIONS",
    "AttentionBlock",
    "AttentionPool2d",
    "Downsample",
    "NoiseAwareClassifier",
    "POOLS",
    "Pool",
    "ResBlock",
    "TimeInjection",
    "UNet",
    "UNetEncoder",
    "UNetFeatures",
    "Upsample",
    "group_norm",
    "level_resolutions",
    "sinusoidal_embedding",
    "zero_init",
]
