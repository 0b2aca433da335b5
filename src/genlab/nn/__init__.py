"""Plain torch networks (no Lightning): U-Net building blocks and the DDPM U-Net."""
from genlab.nn.gan import DiscriminatorArch, GeneratorArch
from genlab.nn.levers import CompileMode
from genlab.nn.classifier import POOLS, AttentionPool2d, NoiseAwareClassifier, Pool
from genlab.nn.layers import (
    ATTENTION_KERNELS,
    TIME_INJECTIONS,
    AttentionBlock,
    AttentionKernel,
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
    "ATTENTION_KERNELS",
    "AttentionKernel",
    "CompileMode",
    "DiscriminatorArch",
    "GeneratorArch",
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
