"""genlab's U-Net and diffusers' UNet2DModel built to the same architecture, and one training step of each."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from genlab.nn import UNet
from genlab.nn.levers import as_channels_last, compiled_call, set_levers

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "unet"


@dataclass(frozen=True)
class UNetSize:
    """A U-Net block of configs/unet/ at an image shape, and the batch it is timed with."""

    name: str
    config: str  # file in configs/unet/
    channels: int
    resolution: int
    batch: int

    def settings(self) -> dict:
        cfg = OmegaConf.load(CONFIGS / f"{self.config}.yaml")
        return dict(base_channels=cfg.base_channels, channel_mult=tuple(cfg.channel_mult),
                    num_res_blocks=cfg.num_res_blocks, attention_resolutions=tuple(cfg.attention_resolutions),
                    dropout=cfg.dropout, num_heads=cfg.get("num_heads", 1))


def genlab_unet(size: UNetSize) -> UNet:
    """genlab's U-Net of the size."""
    return UNet(in_channels=size.channels, resolution=size.resolution, **size.settings())


def diffusers_unet(size: UNetSize) -> nn.Module:
    """diffusers' UNet2DModel with genlab's layout: the same widths, blocks, attention levels, heads and norms."""
    with warnings.catch_warnings():
        # Importing diffusers decorates unrelated Kandinsky code with CUDA autocast and warns on a CPU-only machine.
        warnings.filterwarnings("ignore", message="CUDA is not available", category=UserWarning)
        from diffusers import UNet2DModel

    s = size.settings()
    widths = [s["base_channels"] * m for m in s["channel_mult"]]
    res = [size.resolution // 2**i for i in range(len(widths))]
    down = tuple("AttnDownBlock2D" if r in s["attention_resolutions"] else "DownBlock2D" for r in res)
    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    attn_widths = {w for w, r in zip(widths, res) if r in s["attention_resolutions"]} | {widths[-1]}  # + middle
    if len(attn_widths) != 1:
        raise ValueError(f"diffusers takes one attention_head_dim; attention runs at widths {sorted(attn_widths)}")
    return UNet2DModel(
        sample_size=size.resolution, in_channels=size.channels, out_channels=size.channels,
        block_out_channels=tuple(widths), layers_per_block=s["num_res_blocks"], down_block_types=down,
        up_block_types=up, dropout=s["dropout"], attention_head_dim=attn_widths.pop() // s["num_heads"],
        # genlab's group_norm: up to 32 groups of >= 4 channels; one count that divides every width gives the same
        # parameters (GroupNorm's affine weights do not depend on the groups) and nearly the same work.
        norm_num_groups=_groups(s["base_channels"]), norm_eps=1e-6,
    )


def _groups(base_channels: int) -> int:
    return max(g for g in range(1, min(32, base_channels // 4) + 1) if base_channels % g == 0)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


Levers = dict  # channels_last, compile, attention ("sdpa" | "math"), grad_checkpointing


def prepare(net: nn.Module, levers: Levers, device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """The network as eps(x, t) with the levers applied: genlab's own switches, or diffusers' equivalents."""
    net = net.to(device).train()
    if isinstance(net, UNet):
        set_levers(net, attention=levers.get("attention", "auto"),
                   grad_checkpointing=levers.get("grad_checkpointing", False))
        fn: Callable[..., Tensor] = net
    else:
        if levers.get("grad_checkpointing"):
            net.enable_gradient_checkpointing()

        def fn(x: Tensor, t: Tensor) -> Tensor:
            return net(x, t, return_dict=False)[0]

    if levers.get("channels_last"):
        net.to(memory_format=torch.channels_last)
    if levers.get("compile"):
        # genlab's lever compiles the bound forward (genlab.nn.levers), as its training step does
        fn = compiled_call(net) if isinstance(net, UNet) else torch.compile(fn)
    return fn


def train_step(
    net: nn.Module, size: UNetSize, levers: Levers, device: torch.device, autocast: torch.dtype | None = None
) -> Callable[[], Tensor]:
    """One step of eps-prediction training (forward, MSE, backward, Adam) on a fixed random batch."""
    fn = prepare(net, levers, device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(size.batch, size.channels, size.resolution, size.resolution, generator=g).to(device)
    noise = torch.randn(x.shape, generator=g).to(device)
    t = torch.randint(0, 1000, (size.batch,), generator=g).to(device)
    if levers.get("channels_last"):
        x = as_channels_last(x)

    def step() -> Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = (fn(x, t).float() - noise).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def saved_activation_bytes(net: nn.Module, size: UNetSize, levers: Levers) -> int:
    """Bytes the forward pass keeps for the backward pass (what gradient checkpointing trades for compute)."""
    fn = prepare(net, {k: v for k, v in levers.items() if k != "compile"}, torch.device("cpu"))
    seen: dict[tuple[int, tuple[int, ...]], int] = {}

    def pack(t: Tensor) -> Tensor:
        if t.device.type != "meta" and t.numel():
            seen[(t.untyped_storage().data_ptr(), tuple(t.shape))] = t.numel() * t.element_size()
        return t

    def keep_inputs(module: nn.Module, args: tuple) -> None:
        # A checkpointed block keeps its inputs itself, outside autograd's hooks.
        for a in args:
            pack(a)

    hooks = [m.register_forward_pre_hook(keep_inputs) for m in net.modules()
             if getattr(m, "grad_checkpointing", False)]
    x = torch.randn(size.batch, size.channels, size.resolution, size.resolution)
    t = torch.randint(0, 1000, (size.batch,))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, t).sum()
    for hook in hooks:
        hook.remove()
    # Parameters are saved too but exist anyway: count activations only.
    params = {(p.untyped_storage().data_ptr(), tuple(p.shape)) for p in net.parameters()}
    return sum(v for k, v in seen.items() if k not in params)
