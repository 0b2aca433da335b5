"""GAN inversion by optimisation: find z with G(z) close to a target image (e.g. Creswell & Bharath 2018;
Abdal et al. 2019). Several random restarts run as one batch; the restart with the lowest final error wins."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class LatentFit:
    """The result of `invert_generator`."""

    z: Tensor  # best latent [1, latent_dim]
    start: Tensor  # G(z) of the winning restart before optimisation [1, C, H, W]
    recon: Tensor  # G(z) after optimisation [1, C, H, W]
    mse_per_step: list[float]  # pixel MSE of the winning restart, before step 1 and after every step
    restart_mse: list[float]  # final pixel MSE of every restart


def invert_generator(
    generator: Callable[[Tensor], Tensor],
    target: Tensor,
    latent_dim: int,
    *,
    steps: int = 500,
    restarts: int = 4,
    lr: float = 0.05,
    seed: int = 0,
    feature_fn: Callable[[Tensor], Tensor] | None = None,
    feature_weight: float = 0.0,
) -> LatentFit:
    """Minimise ||G(z) - target||^2 (pixel mean) + feature_weight * ||phi(G(z)) - phi(target)||^2 over z with Adam.

    generator maps z [R, latent_dim] to images [R, C, H, W] (labels, if any, bound by the caller); target is
    [1, C, H, W] on the generator's device. feature_fn (e.g. the discriminator's pooled features) adds a perceptual
    term when feature_weight > 0. The generator's parameters get no gradients: only z is optimised.
    """
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps={steps} and restarts={restarts} must be >= 1")
    if feature_weight > 0 and feature_fn is None:
        raise ValueError("feature_weight > 0 needs a feature_fn")
    device = target.device
    # Latents drawn on the CPU, so the same seed gives the same restarts on any device.
    z = torch.randn(restarts, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    target_features = feature_fn(target).detach() if feature_weight > 0 else None  # [1, F]
    history: list[Tensor] = []  # per step: pixel MSE of each restart [R]

    def pixel_mse(images: Tensor) -> Tensor:
        return (images - target).pow(2).flatten(1).mean(dim=1)  # [R]

    start = None
    for _ in range(steps):
        images = generator(z)
        mse = pixel_mse(images)
        history.append(mse.detach().cpu())  # the error at this z, before its update
        if start is None:
            start = images.detach()
        loss = mse
        if target_features is not None:
            loss = loss + feature_weight * (feature_fn(images) - target_features).pow(2).mean(dim=1)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # restarts are independent: the sum gives each its own gradient
        optimizer.step()
    with torch.no_grad():
        history.append(pixel_mse(generator(z)).cpu())
    final = history[-1]
    best = int(final.argmin())
    with torch.no_grad():
        recon = generator(z[best : best + 1].detach())
    assert start is not None
    return LatentFit(
        z=z[best : best + 1].detach(),
        start=start[best : best + 1],
        recon=recon,
        mse_per_step=[float(h[best]) for h in history],
        restart_mse=[float(v) for v in final],
    )
