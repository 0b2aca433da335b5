"""The variational bound in bits/dim against closed forms: Gaussian KL, discretised decoder, a hand-computed T = 2."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.diffusion import GaussianDiffusion
from genlab.diffusion.likelihood import (
    discretized_gaussian_log_likelihood,
    nll_bpd,
    normal_kl,
    prior_bpd,
    quantize_to_bins,
)


def test_normal_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g), torch.randn(50, generator=g)
    lv1, lv2 = torch.randn(50, generator=g), torch.randn(50, generator=g)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-5, atol=1e-6)
    assert normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-6


def test_discretized_gaussian_probabilities_sum_to_one() -> None:
    grid = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, log_scale in [(0.0, -3.0), (0.9, -6.0), (-1.3, 0.5), (0.2, -9.0)]:
        log_p = discretized_gaussian_log_likelihood(
            grid, torch.full_like(grid, mean), torch.full_like(grid, log_scale)
        )
        assert abs(log_p.exp().sum().item() - 1.0) < 1e-9
        assert torch.isfinite(log_p).all()


def test_discretized_gaussian_interior_bin_is_a_cdf_difference() -> None:
    x, mean, scale = torch.tensor([0.2]), torch.tensor([0.1]), 0.05
    normal = torch.distributions.Normal(0.1, scale)
    expected = math.log(normal.cdf(x + 1 / 255).item() - normal.cdf(x - 1 / 255).item())
    got = discretized_gaussian_log_likelihood(x, mean, torch.tensor([math.log(scale)])).item()
    assert abs(got - expected) < 1e-5


def test_quantize_rounds_to_the_8bit_grid() -> None:
    x = torch.tensor([-1.0, -0.99, 0.0, 0.999, 1.2])
    q = quantize_to_bins(x)
    assert torch.allclose((q + 1) * 127.5, ((q + 1) * 127.5).round(), atol=1e-4)
    assert q[0] == -1 and q[-1] == 1 and abs(q[2].item() - (128 / 127.5 - 1)) < 1e-6  # 127.5 rounds to 128


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _kl(m1: float, v1: float, m2: float, v2: float) -> float:
    return 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def test_bound_for_a_fake_network_on_two_steps_matches_a_hand_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    b0, b1 = 0.1, 0.3
    diffusion = GaussianDiffusion(torch.tensor([b0, b1]))
    x0_value = 0.2  # the decoder's bin is centred on x0 whether or not it lies on the 8-bit grid
    x0 = torch.full((1, 1, 1, 1), x0_value, dtype=torch.float64)
    noises = [0.7, -1.1]  # the noise drawn for t = 0, then for t = 1
    fake_eps = lambda x, t: 0.5 * x + 0.1 * t.view(-1, 1, 1, 1)  # noqa: E731

    draws = iter(noises)
    monkeypatch.setattr(torch, "randn", lambda shape, **kw: torch.full(shape, next(draws), dtype=kw.get("dtype")))
    out = nll_bpd(diffusion, fake_eps, x0)

    a0, a1 = 1 - b0, 1 - b1
    ab0, ab1 = a0, a0 * a1
    beta_tilde1 = b1 * (1 - ab0) / (1 - ab1)
    # t = 1: KL(q(x_0' | x_1, x_0) || p(x_0' | x_1)), variance beta_tilde_1 for both
    x1 = math.sqrt(ab1) * x0_value + math.sqrt(1 - ab1) * noises[1]
    c1, c2 = math.sqrt(ab0) * b1 / (1 - ab1), math.sqrt(a1) * (1 - ab0) / (1 - ab1)
    x0_hat = (x1 - math.sqrt(1 - ab1) * (0.5 * x1 + 0.1)) / math.sqrt(ab1)
    kl1 = _kl(c1 * x0_value + c2 * x1, beta_tilde1, c1 * x0_hat + c2 * x1, beta_tilde1)
    # t = 0: the decoder, mean = x0_hat at t = 0, log-variance clipped to log beta_tilde_1
    xt0 = math.sqrt(ab0) * x0_value + math.sqrt(1 - ab0) * noises[0]
    mean0 = (xt0 - math.sqrt(1 - ab0) * 0.5 * xt0) / math.sqrt(ab0)
    s = math.sqrt(beta_tilde1)
    decoder = -math.log(_phi((x0_value + 1 / 255 - mean0) / s) - _phi((x0_value - 1 / 255 - mean0) / s))
    prior = _kl(math.sqrt(ab1) * x0_value, 1 - ab1, 0.0, 1.0)
    ln2 = math.log(2)  # the schedule buffers are float32: compare to 1e-6 relative
    assert out["terms"][0, 1].item() == pytest.approx(kl1 / ln2, rel=1e-6)
    assert out["decoder"].item() == pytest.approx(decoder / ln2, rel=1e-6)
    assert out["prior"].item() == pytest.approx(prior / ln2, rel=1e-6)
    assert out["total"].item() == pytest.approx((kl1 + decoder + prior) / ln2, rel=1e-6)


def test_prior_term_vanishes_for_a_long_schedule() -> None:
    diffusion = GaussianDiffusion(torch.linspace(1e-4, 0.02, 1000))
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    assert prior_bpd(diffusion, x0).max() < 1e-4
