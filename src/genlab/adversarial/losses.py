"""Adversarial losses and penalties as plain torch functions of logits (no networks, no Lightning).

Conventions: a logit is the discriminator's raw output D(x); larger means "more real". Every loss is a mean over
all elements, so per-pixel logits [B, 1, H, W] (U-Net discriminator) and global logits [B] go through the same code.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

class AdversarialLoss(StrEnum):
    """The GAN objective."""

    non_saturating = "non_saturating"
    hinge = "hinge"
    wasserstein = "wasserstein"  # needs gan.lambda_gp > 0 (WGAN-GP) or gan.spectral_norm
    relativistic = "relativistic"  # RpGAN, paired real and fake (R3GAN: with gan.lambda_r1 and gan.lambda_r2)


ADVERSARIAL_LOSSES: tuple[str, ...] = tuple(m.value for m in AdversarialLoss)


def _check(name: str) -> None:
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(f"adversarial loss must be one of {list(ADVERSARIAL_LOSSES)}, got {name!r}")


def discriminator_loss(name: AdversarialLoss, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The discriminator's adversarial loss, a scalar.

    non_saturating: -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z)))) (Goodfellow et al. 2014), via softplus;
    hinge: max(0, 1 - D(x)) + max(0, 1 + D(G(z))) (Lim & Ye 2017; Miyato et al. 2018);
    wasserstein: D(G(z)) - D(x) (Arjovsky et al. 2017), for a critic kept Lipschitz by a gradient penalty;
    relativistic: softplus(D(G(z)) - D(x)), each fake paired with one real (RpGAN: Jolicoeur-Martineau 2019; the loss
    of R3GAN, Huang et al. 2024, eq. 2), which judges how much more real x is than G(z).
    """
    _check(name)
    if name == "relativistic":
        return F.softplus(fake_logits - real_logits).mean()
    if name == "non_saturating":
        # log(1 - sigmoid(a)) = -softplus(a) and -log sigmoid(a) = softplus(-a), stable for large |a|.
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if name == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def generator_loss(name: AdversarialLoss, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
    """The generator's adversarial loss, a scalar: -log sigmoid(D(G(z))) (non-saturating), -D(G(z)) (hinge and
    wasserstein), or softplus(D(x) - D(G(z))) for the relativistic loss, which needs the paired reals' logits."""
    _check(name)
    if name == "relativistic":
        if real_logits is None:
            raise ValueError("the relativistic generator loss needs the paired reals' logits (real_logits)")
        return F.softplus(real_logits - fake_logits).mean()
    if name == "non_saturating":
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def _input_gradients(score_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """d score(x).sum() / dx, kept in the graph so a penalty on it trains the discriminator."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(score_fn(x).sum(), x, create_graph=True)
    return grad  # [B, C, H, W]


def gradient_penalty(
    score_fn: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017, eq. 3): E[(||grad D(x_hat)||_2 - 1)^2], x_hat uniform on real-fake segments."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)  # [B, 1, 1, 1]
    x_hat = alpha * real.detach() + (1 - alpha) * fake.detach()
    grad = _input_gradients(score_fn, x_hat)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def r1_penalty(score_fn: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): E_real[||grad_x D(x)||^2]; the caller weighs it by lambda_r1 / 2. On the fakes it
    is R2, which R3GAN adds to R1 (Huang et al. 2024, sec. 2.2)."""
    grad = _input_gradients(score_fn, real)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def batch_diversity(fake: Tensor, real: Tensor) -> Tensor:
    """Mean per-pixel standard deviation across the batch of fakes, relative to that of the reals.

    About 1 for a generator that covers the data; near 0 when every z gives the same image (mode collapse).
    """
    fake_std = fake.detach().float().std(dim=0).mean()
    real_std = real.detach().float().std(dim=0).mean().clamp_min(1e-8)
    return fake_std / real_std
