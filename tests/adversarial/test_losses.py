"""Adversarial losses and penalties against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.adversarial import batch_diversity, discriminator_loss, generator_loss, gradient_penalty, r1_penalty

REAL = torch.tensor([2.0, -0.5])
FAKE = torch.tensor([-1.5, 0.25])


def softplus(a: float) -> float:
    return math.log1p(math.exp(a))


def test_hinge_losses_match_hand_computed_values() -> None:
    # D: mean(max(0, 1 - [2, -0.5])) + mean(max(0, 1 + [-1.5, 0.25])) = (0 + 1.5)/2 + (0 + 1.25)/2
    assert discriminator_loss("hinge", REAL, FAKE).item() == pytest.approx(0.75 + 0.625)
    # G: -mean(D(G(z)))
    assert generator_loss("hinge", FAKE).item() == pytest.approx(0.625)


def test_non_saturating_losses_match_hand_computed_values() -> None:
    expected_d = (softplus(-2.0) + softplus(0.5)) / 2 + (softplus(-1.5) + softplus(0.25)) / 2
    assert discriminator_loss("non_saturating", REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    # -log sigmoid(a) = softplus(-a)
    expected_g = (softplus(1.5) + softplus(-0.25)) / 2
    assert generator_loss("non_saturating", FAKE).item() == pytest.approx(expected_g, rel=1e-6)


def test_non_saturating_loss_is_the_binary_cross_entropy() -> None:
    real, fake = torch.randn(16) * 5, torch.randn(16) * 5
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(real, torch.ones(16)) + bce(fake, torch.zeros(16))
    assert discriminator_loss("non_saturating", real, fake).item() == pytest.approx(expected.item(), rel=1e-6)


def test_wasserstein_losses_match_hand_computed_values() -> None:
    assert discriminator_loss("wasserstein", REAL, FAKE).item() == pytest.approx(-0.625 - 0.75)
    assert generator_loss("wasserstein", FAKE).item() == pytest.approx(0.625)


def test_unknown_loss_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="hinge"):
        discriminator_loss("lsgan", REAL, FAKE)  # type: ignore[arg-type]


def test_r1_is_zero_for_a_discriminator_that_ignores_its_input() -> None:
    bias = torch.nn.Parameter(torch.tensor(0.7))

    def constant(x: torch.Tensor) -> torch.Tensor:
        return bias * torch.ones(x.shape[0]) + 0 * x.sum(dim=(1, 2, 3))

    assert r1_penalty(constant, torch.randn(4, 1, 8, 8)).item() == 0.0


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm() -> None:
    w = torch.randn(1, 3, 4, 4)

    def linear(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum(dim=(1, 2, 3))

    assert r1_penalty(linear, torch.randn(5, 3, 4, 4)).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic_and_trains_the_critic() -> None:
    w = torch.randn(1, 2, 4, 4)
    w = torch.nn.Parameter(w / w.norm())

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum(dim=(1, 2, 3))

    real, fake = torch.randn(6, 2, 4, 4), torch.randn(6, 2, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        w.mul_(3.0)  # ||grad|| = 3: penalty (3 - 1)^2 = 4, and it is differentiable w.r.t. the critic
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx(4.0, rel=1e-5)
    penalty.backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_batch_diversity_is_zero_for_identical_fakes_and_one_for_the_data_itself() -> None:
    real = torch.randn(32, 1, 8, 8)
    assert batch_diversity(real[:1].expand(32, -1, -1, -1), real).item() == 0.0
    assert batch_diversity(real, real).item() == pytest.approx(1.0)


def test_relativistic_losses_pair_each_fake_with_a_real() -> None:
    # RpGAN: D: mean softplus(D(G(z)) - D(x)); G: mean softplus(D(x) - D(G(z))), pairwise.
    expected_d = (softplus(-1.5 - 2.0) + softplus(0.25 + 0.5)) / 2
    assert discriminator_loss("relativistic", REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    expected_g = (softplus(2.0 + 1.5) + softplus(-0.5 - 0.25)) / 2
    assert generator_loss("relativistic", FAKE, REAL).item() == pytest.approx(expected_g, rel=1e-6)
    # A shift of every logit by the same amount changes nothing: only the real-fake difference counts.
    assert discriminator_loss("relativistic", REAL + 3, FAKE + 3).item() == pytest.approx(expected_d, rel=1e-6)
    with pytest.raises(ValueError, match="needs the paired reals' logits"):
        generator_loss("relativistic", FAKE)
