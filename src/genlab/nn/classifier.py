"""Noise-aware classifier p_phi(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021, sec. 4 and App. C).

As in the paper, the classifier is the downsampling half of the diffusion U-Net, with the same timestep embedding,
followed by a pooling head that maps the coarsest feature map to class logits. It is trained on noised images
x_t = q_sample(x0, t, eps), so that its gradient is meaningful along the whole sampling chain.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nn.layers import TimeInjection, group_norm
from genlab.nn.unet import UNetEncoder

class Pool(StrEnum):
    """The classifier head: attention pooling or global average pooling."""

    attention = "attention"
    avg = "avg"


POOLS: tuple[str, ...] = tuple(m.value for m in Pool)


class AttentionPool2d(nn.Module):
    """Pool [B, C, H, W] to [B, C]: the mean token attends over itself and the H*W positions (CLIP-style)."""

    def __init__(self, channels: int, spatial: int, num_heads: int = 1) -> None:
        super().__init__()
        if num_heads < 1 or channels % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide channels={channels}")
        self.num_heads = num_heads
        self.spatial = spatial
        # One learned position per token: the mean token first, then the H*W positions in row-major order.
        self.pos_emb = nn.Parameter(torch.randn(spatial * spatial + 1, channels) / channels**0.5)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)

    def forward(self, x: Tensor) -> Tensor:
        """Map x [B, C, H, W] to the attended mean token [B, C] (heads concatenated)."""
        B, C, H, W = x.shape  # batch, channels, height, width
        if (H, W) != (self.spatial, self.spatial):
            raise ValueError(f"attention pooling was built for {self.spatial}x{self.spatial} maps, got {H}x{W}")
        heads, d = self.num_heads, C // self.num_heads
        tokens = x.reshape(B, C, H * W).transpose(1, 2)  # [B, HW, C]
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # [B, 1 + HW, C]
        tokens = tokens + self.pos_emb  # [B, N, C], N = 1 + HW
        # Only the mean token's output is kept, so only it needs a query.
        q = self.q(tokens[:, :1]).reshape(B, 1, heads, d).transpose(1, 2)  # [B, heads, 1, d]
        kv = self.kv(tokens).reshape(B, -1, 2, heads, d)  # [B, N, 2, heads, d]
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, 1, d], softmax(q k^T / sqrt(d)) v
        return out.reshape(B, C)  # [B, heads, 1, d] -> [B, heads * d]


class NoiseAwareClassifier(nn.Module):
    """Logits of p(y | x_t, t): an unconditional U-Net encoder, then GroupNorm, SiLU, pooling and a linear layer."""

    def __init__(
        self,
        *,
        in_channels: int,
        resolution: int,
        num_classes: int,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        num_heads: int = 1,
        time_injection: TimeInjection = "add",
        pool: Pool = "attention",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {list(POOLS)}, got {pool!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.num_classes = num_classes
        self.pool = pool
        # Unconditional (num_classes=None): the label is what the classifier predicts, never an input.
        self.encoder = UNetEncoder(
            in_channels=in_channels,
            resolution=resolution,
            base_channels=base_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions,
            dropout=dropout,
            num_heads=num_heads,
            time_injection=time_injection,
        )
        ch = self.encoder.out_channels
        self.out_norm = group_norm(ch)
        spatial = self.encoder.level_resolutions[-1]
        self.attn_pool = AttentionPool2d(ch, spatial, num_heads) if pool == "attention" else None
        # Default init, not zero (unlike the U-Net's output conv): a zero head would block the gradient
        # to everything below it on the first step.
        self.head = nn.Linear(ch, num_classes)

    @property
    def num_features(self) -> int:
        """Size of the pooled feature vector that the linear head reads."""
        return self.head.in_features

    def features(self, x: Tensor, t: Tensor) -> Tensor:
        """Pooled penultimate features [B, C_mid] for x_t [B, C, H, W] at timesteps t [B] (FID's domain features)."""
        h = self.encoder(x, t).h  # [B, C_mid, R', R'], the middle-block output
        h = F.silu(self.out_norm(h))
        if self.attn_pool is not None:
            return self.attn_pool(h)  # [B, C_mid]
        return h.mean(dim=(2, 3))  # [B, C_mid], global average pooling

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Logits [B, num_classes] for x_t [B, C, H, W] at timesteps t [B]."""
        return self.head(self.features(x, t))
