"""The DDPM U-Net (Ho et al. 2020, Appendix B), split into a reusable encoder and the full model.

`UNetEncoder` holds the timestep (and class) embedding, the down path and the middle block, so a
noise-aware classifier can reuse it without the up path. `UNet` adds the up path, which consumes
the encoder's skip activations by concatenation, and the output head.

With the CIFAR-10 settings (base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
attention at 16x16) the model has 35,746,307 parameters, the 35.7M of the paper.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from genlab.nn.layers import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimeInjection,
    Upsample,
    check_time_injection,
    group_norm,
    sinusoidal_embedding,
    zero_init,
)


class UNetFeatures(NamedTuple):
    """What the encoder hands to a decoder or a classifier head."""

    h: Tensor  # middle-block output [B, C_mid, H / 2**(L-1), W / 2**(L-1)]
    emb: Tensor  # time (+ class) embedding [B, 4 * base_channels]
    skips: list[Tensor]  # every down-path activation, shallowest first


def level_resolutions(resolution: int, channel_mult: Sequence[int]) -> list[int]:
    """Spatial size of each U-Net level; ValueError if `resolution` cannot be halved enough."""
    if len(channel_mult) == 0 or any(m < 1 for m in channel_mult):
        raise ValueError(f"channel_mult must be non-empty positive ints, got {channel_mult}")
    factor = 2 ** (len(channel_mult) - 1)
    if resolution < 1 or resolution % factor != 0:
        raise ValueError(
            f"resolution={resolution} must be divisible by 2**(len(channel_mult)-1)={factor} "
            f"for channel_mult={tuple(channel_mult)}"
        )
    return [resolution // 2**i for i in range(len(channel_mult))]


def check_layout(resolution: int, base_channels: int, channel_mult: Sequence[int],
                 attention_resolutions: Sequence[int], num_heads: int) -> list[int]:
    """The level resolutions of a U-Net of this layout; ValueError when it cannot be built: a resolution that cannot
    be halved enough, attention at a resolution no level has, or heads that do not divide an attending level's
    channels. Plain numbers, so a config is checked when it loads, before any network exists."""
    resolutions = level_resolutions(resolution, channel_mult)
    bad = sorted(set(attention_resolutions) - set(resolutions))
    if bad:
        raise ValueError(
            f"attention_resolutions {bad} are not level resolutions {resolutions} "
            f"(resolution={resolution}, channel_mult={tuple(channel_mult)})"
        )
    # The middle block attends at the last level's width, besides the levels of attention_resolutions.
    attending = {base_channels * m for m, r in zip(channel_mult, resolutions) if r in attention_resolutions}
    for channels in sorted(attending | {base_channels * channel_mult[-1]}):
        if num_heads < 1 or channels % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide the {channels} channels of every "
                             "attention block")
    return resolutions


class ResAttn(nn.Module):
    """A ResBlock optionally followed by self-attention."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn
        # Gradient checkpointing: keep only this block's inputs for the backward pass and recompute the rest,
        # trading about one extra forward for the activation memory of large resolutions.
        self.grad_checkpointing = False

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Apply the residual block, then attention if present."""
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            # Non-reentrant: works with torch.compile and inputs that need no grad; the RNG state is replayed,
            # so dropout drops the same units in the recomputation.
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.res(x, emb)
        return self.attn(h) if self.attn is not None else h


class DownLevel(nn.Module):
    """One encoder level: ResBlocks (with attention), then an optional stride-2 downsample."""

    def __init__(self, blocks: list[ResAttn], downsample: Downsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, h: Tensor, emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Return the level output and the activations the decoder will concatenate."""
        skips = []
        for block in self.blocks:
            h = block(h, emb)
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h)
            skips.append(h)
        return h, skips


class UpLevel(nn.Module):
    """One decoder level: ResBlocks on [h, skip] concatenations, then an optional upsample."""

    def __init__(self, blocks: list[ResAttn], upsample: Upsample | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.upsample = upsample

    def forward(self, h: Tensor, emb: Tensor, skips: list[Tensor]) -> Tensor:
        """Consume skips from the end of `skips` (popping them) and return the level output."""
        for block in self.blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # [B, C_h + C_skip, H, W]
        return self.upsample(h) if self.upsample is not None else h


class UNetEncoder(nn.Module):
    """Embedding, input conv, down path and middle block (res-attn-res) of the DDPM U-Net."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        resolution: int = 32,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        num_heads: int = 1,
        time_injection: TimeInjection = "add",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        resolutions = check_layout(resolution, base_channels, channel_mult, attention_resolutions, num_heads)
        _check_args(in_channels, base_channels, num_res_blocks, dropout, num_classes)
        time_injection = check_time_injection(time_injection)
        self.base_channels = base_channels
        self.channel_mult = tuple(channel_mult)
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.level_resolutions = resolutions
        self.emb_dim = 4 * base_channels
        self.null_class = num_classes  # the extra embedding row used for "no label" (CFG)

        self.time_mlp = nn.Sequential(
            nn.Linear(base_channels, self.emb_dim), nn.SiLU(), nn.Linear(self.emb_dim, self.emb_dim)
        )
        self.class_embed = (
            nn.Embedding(num_classes + 1, self.emb_dim) if num_classes is not None else None
        )
        self.input_conv = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        self.dropout = dropout
        self.num_heads = num_heads
        self.time_injection = time_injection
        ch = base_channels
        self.skip_channels = [ch]  # the input conv output is the first skip
        self.down = nn.ModuleList()
        for level, (mult, res) in enumerate(zip(self.channel_mult, resolutions)):
            attn = res in self.attention_resolutions
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(self.make_block(ch, base_channels * mult, attn))
                ch = base_channels * mult
                self.skip_channels.append(ch)
            last = level == len(self.channel_mult) - 1
            self.down.append(DownLevel(blocks, None if last else Downsample(ch)))
            if not last:
                self.skip_channels.append(ch)
        # The middle block always attends, at the coarsest resolution.
        self.mid = nn.ModuleList([self.make_block(ch, ch, True), self.make_block(ch, ch, False)])
        self.out_channels = ch

    def make_block(self, c_in: int, c_out: int, attn: bool) -> ResAttn:
        """A ResBlock (plus attention if `attn`) with this network's settings, for both halves."""
        res = ResBlock(c_in, c_out, self.emb_dim, self.dropout, self.time_injection)
        return ResAttn(res, AttentionBlock(c_out, self.num_heads) if attn else None)

    def embed(self, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Timestep embedding [B, emb_dim], plus the class embedding for conditional models."""
        emb = self.time_mlp(sinusoidal_embedding(t, self.base_channels))  # [B, emb_dim]
        if self.class_embed is None:
            if y is not None:
                raise ValueError("this model is unconditional (num_classes=None) but got labels y")
            return emb
        if y is None:
            # No label: every sample gets the null class, as classifier-free guidance expects.
            y = torch.full((t.shape[0],), self.null_class, dtype=torch.long, device=t.device)
        if y.shape != t.shape:
            raise ValueError(f"labels y must have shape {tuple(t.shape)}, got {tuple(y.shape)}")
        return emb + self.class_embed(y)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> UNetFeatures:
        """Encode x [B, C, H, W] at timesteps t [B] (labels y [B] or None)."""
        if t.shape != (x.shape[0],):
            raise ValueError(f"timesteps t must have shape [B]=[{x.shape[0]}], got {list(t.shape)}")
        emb = self.embed(t, y)
        h = self.input_conv(x)
        skips = [h]
        for level in self.down:
            h, level_skips = level(h, emb)
            skips.extend(level_skips)
        for block in self.mid:
            h = block(h, emb)
        return UNetFeatures(h, emb, skips)


class UNet(nn.Module):
    """DDPM U-Net: eps_theta(x_t, t[, y]) with the output shaped like the input."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int | None = None,
        resolution: int = 32,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        num_heads: int = 1,
        time_injection: TimeInjection = "add",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if out_channels < 1:
            raise ValueError(f"out_channels must be >= 1, got {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
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
            num_classes=num_classes,
        )
        enc = self.encoder
        skip_channels = list(enc.skip_channels)
        ch = enc.out_channels
        self.up = nn.ModuleList()
        for level in reversed(range(len(enc.channel_mult))):
            c_out = base_channels * enc.channel_mult[level]
            attn = enc.level_resolutions[level] in enc.attention_resolutions
            blocks = []
            # One more block than the encoder level: it also consumes that level's
            # downsample output (or, at the top, the input conv output).
            for _ in range(num_res_blocks + 1):
                blocks.append(enc.make_block(ch + skip_channels.pop(), c_out, attn))
                ch = c_out
            self.up.append(UpLevel(blocks, Upsample(ch) if level > 0 else None))
        assert not skip_channels, "every skip activation must be consumed"
        self.out_norm = group_norm(ch)
        self.out_conv = zero_init(nn.Conv2d(ch, out_channels, 3, padding=1))

    @property
    def null_class(self) -> int | None:
        """Label index meaning "no class" (classifier-free guidance), or None if unconditional."""
        return self.encoder.null_class

    @property
    def num_classes(self) -> int | None:
        """Number of real classes, or None if unconditional."""
        return self.encoder.null_class

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict [B, out_channels, H, W] from x [B, in_channels, H, W], t [B] and labels y [B]."""
        return self.decode(self.encoder(x, t, y))

    def decode(self, features: UNetFeatures) -> Tensor:
        """The up path and output head on the encoder's features: [B, out_channels, H, W]."""
        h, emb, skips = features.h, features.emb, list(features.skips)  # a copy: decoding pops the skips
        for level in self.up:
            h = level(h, emb, skips)
        return self.out_conv(F.silu(self.out_norm(h)))


def _check_args(
    in_channels: int,
    base_channels: int,
    num_res_blocks: int,
    dropout: float,
    num_classes: int | None,
) -> None:
    """Raise ValueError on sizes that would build a broken network."""
    for name, value in [
        ("in_channels", in_channels),
        ("base_channels", base_channels),
        ("num_res_blocks", num_res_blocks),
    ]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 or None, got {num_classes}")
