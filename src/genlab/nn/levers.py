"""Speed levers of the genlab networks: switches that change how, never what, a network computes."""

from __future__ import annotations

from enum import StrEnum
from typing import Callable

import torch
from torch import Tensor, nn

from genlab.nn.layers import ATTENTION_KERNELS, AttentionBlock, AttentionKernel
from genlab.nn.unet import ResAttn


class CompileMode(StrEnum):
    """torch.compile's mode, spelled with underscores so that it is a valid config value."""

    default = "default"
    reduce_overhead = "reduce_overhead"  # torch's "reduce-overhead": CUDA graphs, for small batches on a GPU
    max_autotune = "max_autotune"  # torch's "max-autotune": searches kernels at compile time (minutes)


def set_levers(
    net: nn.Module,
    *,
    attention: AttentionKernel = "auto",
    grad_checkpointing: bool = False,
    channels_last: bool = False,
) -> nn.Module:
    """Set the attention kernel, gradient checkpointing and weight memory format of every block; return `net`."""
    if attention not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel must be one of {list(ATTENTION_KERNELS)}, got {attention!r}")
    for module in net.modules():
        if isinstance(module, AttentionBlock):
            module.kernel = attention
        elif isinstance(module, ResAttn):
            module.grad_checkpointing = grad_checkpointing
    # channels_last changes the strides of the 4-D conv weights only: state_dict keys and values stay the same.
    return net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def as_channels_last(x: Tensor) -> Tensor:
    """NHWC strides for a 4-D image batch (the layout oneDNN and cuDNN convolutions prefer); others unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def compiled_call(net: nn.Module, mode: str = "default") -> Callable[..., Tensor]:
    """torch.compile of `net`'s forward as a plain function; `mode` as torch spells it or with underscores.

    Compiling the bound forward rather than wrapping the module keeps the compiled code out of the module tree:
    an OptimizedModule attribute would add `_orig_mod.` to every checkpoint key.
    """
    return torch.compile(net.forward, mode=str(mode).replace("_", "-"))
