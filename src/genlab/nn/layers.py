"""U-Net building blocks: timestep embedding, residual block, self-attention, resampling.

The layout follows the DDPM model of Ho et al. 2020 (Appendix B), with the
time-injection variants of Nichol & Dhariwal 2021 (improved DDPM, FiLM) and a
plain concatenation variant for ablations.
"""
from __future__ import annotations

import math
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

class TimeInjection(StrEnum):
    """How the time (and class) embedding enters a residual block."""

    add = "add"
    scale_shift = "scale_shift"
    concat = "concat"


class AttentionKernel(StrEnum):
    """Which kernel computes self-attention; a speed lever only, no weights depend on it."""

    auto = "auto"  # math on a CPU (measured faster there), sdpa on a GPU
    sdpa = "sdpa"  # F.scaled_dot_product_attention: PyTorch picks its fused kernel (flash / memory-efficient / C++)
    math = "math"  # softmax(q k^T / sqrt(d)) v written out: the reference the fused kernels are compared with


TIME_INJECTIONS: tuple[str, ...] = tuple(m.value for m in TimeInjection)
ATTENTION_KERNELS: tuple[str, ...] = tuple(m.value for m in AttentionKernel)


def check_time_injection(mode: str) -> str:
    """Return `mode` as a plain string, or raise ValueError unless it is one of TIME_INJECTIONS."""
    # Accept the config's str-Enum members too; store the plain value so that
    # comparisons and reprs do not depend on the Enum class.
    if mode not in TIME_INJECTIONS:
        raise ValueError(f"time_injection must be one of {list(TIME_INJECTIONS)}, got {mode!r}")
    return mode


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer positional encoding of timesteps: [B] -> [B, dim], sin half then cos half."""
    if t.ndim != 1:
        raise ValueError(f"timesteps must have shape [B], got {tuple(t.shape)}")
    if dim < 4:
        raise ValueError(f"embedding dim must be >= 4, got {dim}")
    half = dim // 2
    # DDPM divides by (half - 1) rather than half (Vaswani et al.), so the last
    # frequency is exactly 1/10000.
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)
    freqs = torch.exp(-math.log(10000.0) * exponent)  # [half]
    args = t.to(torch.float32)[:, None] * freqs[None, :]  # [B, half]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # [B, 2 * half]
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))  # [B, dim]
    return emb


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (DDPM's 128 channels give 32 groups of 4).

    A group of one channel would subtract the per-channel time embedding that "add" injects just
    before the norm, so a narrow U-Net would silently ignore t: keep >= 4 channels per group.
    """
    limit = max(1, min(32, channels // 4))
    groups = max(g for g in range(1, limit + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero every parameter of `module` and return it."""
    # DDPM zero-initialises the last layer of each residual branch (init_scale=0),
    # so every block starts as the identity and the untrained network outputs 0:
    # early training is stable without warm-up tricks.
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block GN-SiLU-conv, timestep injection, GN-SiLU-dropout-conv, plus skip."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        dropout: float = 0.0,
        time_injection: TimeInjection = "add",
    ) -> None:
        super().__init__()
        self.time_injection = check_time_injection(time_injection)
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        # FiLM needs a scale and a shift per channel; the other modes need one vector.
        proj_out = 2 * out_ch if self.time_injection == "scale_shift" else out_ch
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, proj_out))
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        conv2_in = 2 * out_ch if self.time_injection == "concat" else out_ch
        self.conv2 = zero_init(nn.Conv2d(conv2_in, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Map x [B, in_ch, H, W] and emb [B, emb_dim] to [B, out_ch, H, W]."""
        h = self.conv1(F.silu(self.norm1(x)))  # [B, out_ch, H, W]
        e = self.emb_proj(emb)[:, :, None, None]  # [B, proj_out, 1, 1]
        if self.time_injection == "add":
            h = self.norm2(h + e)
        elif self.time_injection == "scale_shift":
            scale, shift = e.chunk(2, dim=1)  # each [B, out_ch, 1, 1]
            # 1 + scale: a zero projection leaves the normalised features unchanged.
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h)
        h = self.dropout(F.silu(h))
        if self.time_injection == "concat":
            h = torch.cat([h, e.expand(-1, -1, *h.shape[2:])], dim=1)  # [B, 2 * out_ch, H, W]
        return self.skip(x) + self.conv2(h)


def attention(q: Tensor, k: Tensor, v: Tensor, kernel: AttentionKernel = "auto") -> Tensor:
    """softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, Eq. 1) on [B, heads, N, d] tensors.

    "sdpa" lets PyTorch pick a fused kernel; "math" spells the formula out; "auto" takes math on a CPU, where
    it measured a few percent faster at the U-Nets' 64-256 positions (benchmarks/), and sdpa on a GPU, where
    the fused kernels avoid storing the N x N weights.
    """
    if kernel == "auto":
        kernel = "sdpa" if q.is_cuda else "math"
    if kernel == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if kernel != "math":
        raise ValueError(f"attention kernel must be one of {list(ATTENTION_KERNELS)}, got {kernel!r}")
    weights = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)  # [B, heads, N, N]
    return weights @ v  # [B, heads, N, d]


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with residual add."""

    def __init__(self, channels: int, num_heads: int = 1, kernel: AttentionKernel = "auto") -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide channels={channels}")
        self.num_heads = num_heads
        self.kernel = str(kernel)  # a speed lever only: no weights depend on it
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        # Zero, as in DDPM's proj_out, so the block starts as the identity.
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Map x [B, C, H, W] to [B, C, H, W]."""
        B, C, H, W = x.shape  # batch, channels, height, width
        heads, d = self.num_heads, C // self.num_heads
        qkv = self.qkv(self.norm(x))  # [B, 3C, H, W]
        qkv = qkv.reshape(B, 3, heads, d, H * W)  # [B, 3, heads, d, HW]
        q, k, v = qkv.permute(1, 0, 2, 4, 3).unbind(0)  # each [B, heads, HW, d]
        out = attention(q, k, v, self.kernel)  # [B, heads, HW, d]
        # contiguous: DDP warns (and slows) when a 1x1 conv gets gradients with strides unlike its weight's
        out = out.transpose(2, 3).reshape(B, C, H, W).contiguous()  # [B, heads, d, HW] -> [B, C, H, W]
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve the spatial size with a stride-2 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, C, H, W] to [B, C, H/2, W/2]."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double the spatial size: nearest-neighbour then a 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map [B, C, H, W] to [B, C, 2H, 2W]."""
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
