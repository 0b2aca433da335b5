"""DDIM inversion and slerp, checked against analytic eps-models whose ODE flow is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from genlab.diffusion import GaussianDiffusion, ddim_invert, ddim_sample, linear_betas, slerp


@pytest.fixture
def diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(linear_betas(1000))


def delta_eps(x_star: Tensor, diffusion: GaussianDiffusion):
    """The exact eps of data that is the single point x*: eps(x_t, t) = (x_t - sqrt(abar_t) x*) / sqrt(1 - abar_t)."""

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        abar = diffusion.extract(diffusion.alphas_cumprod, t, x)
        return (x - abar.sqrt() * x_star) / (1 - abar).sqrt()

    return model_fn


def gaussian_eps(mu: float, s: float, diffusion: GaussianDiffusion):
    """The exact eps of data N(mu, s^2 I): x_t ~ N(sqrt(abar) mu, v I), v = abar s^2 + 1 - abar, and
    eps = -sqrt(1 - abar) * score = sqrt(1 - abar) (x - sqrt(abar) mu) / v. Linear in x."""

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        abar = diffusion.extract(diffusion.alphas_cumprod, t, x).double()
        return ((1 - abar).sqrt() * (x.double() - abar.sqrt() * mu) / (abar * s**2 + 1 - abar)).to(x.dtype)

    return model_fn


def round_trip(diffusion: GaussianDiffusion, model_fn, x0: Tensor, steps: int, spacing: str = "uniform") -> Tensor:
    x_T = ddim_invert(diffusion, model_fn, x0, steps=steps, spacing=spacing)
    return ddim_sample(diffusion, model_fn, x0.shape, steps=steps, x_T=x_T, clip_denoised=False, spacing=spacing)


@pytest.mark.parametrize("steps", [1, 10, 50])
def test_delta_data_round_trip_is_exact(diffusion: GaussianDiffusion, steps: int) -> None:
    # For a single data point every DDIM trajectory keeps eps constant, so Euler steps are exact at any step count.
    x_star = torch.tensor([[0.7, -0.3, 0.1, -0.9]])
    model_fn = delta_eps(x_star, diffusion)
    x_T = ddim_invert(diffusion, model_fn, x_star, steps=steps)
    abar_T = float(diffusion.alphas_cumprod[-1 if steps > 1 else 0])  # steps=1 visits only t = 0
    # x* maps to sqrt(abar_T) x* + sqrt(1 - abar_T) eps0, with eps0 = eps(x*, 0) the (tiny) offset at t = 0.
    eps0 = model_fn(x_star, torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(x_T, math.sqrt(abar_T) * x_star + math.sqrt(1 - abar_T) * eps0, atol=1e-5, rtol=0)
    recon = ddim_sample(diffusion, model_fn, x_star.shape, steps=steps, x_T=x_T, clip_denoised=False)
    torch.testing.assert_close(recon, x_star, atol=1e-5, rtol=0)


def test_gaussian_data_inversion_matches_the_exact_flow(diffusion: GaussianDiffusion) -> None:
    # For N(mu, s^2) data the probability-flow ODE keeps z = (x_t - sqrt(abar) mu) / sqrt(v) constant, so the exact
    # latent of x0 is sqrt(abar_T) mu + sqrt(abar_T s^2 + 1 - abar_T) (x0 - mu) / s.
    mu, s = 0.2, 0.5
    x0 = mu + s * torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    model_fn = gaussian_eps(mu, s, diffusion)
    abar_T = float(diffusion.alphas_cumprod[-1])
    exact = math.sqrt(abar_T) * mu + math.sqrt(abar_T * s**2 + 1 - abar_T) * (x0 - mu) / s
    errors = [(ddim_invert(diffusion, model_fn, x0, steps=k) - exact).abs().max().item() for k in (10, 100, 1000)]
    # Euler is first order: 10x the steps, about 1/10 the error (measured 0.94, 0.095, 0.009; |x_T| up to 3.4).
    assert 5 < errors[0] / errors[1] < 20 and 5 < errors[1] / errors[2] < 20
    assert errors[2] < 0.015


def test_round_trip_error_shrinks_with_steps(diffusion: GaussianDiffusion) -> None:
    mu, s = 0.0, 0.3
    model_fn = gaussian_eps(mu, s, diffusion)
    x0 = s * torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    mse = {k: ((round_trip(diffusion, model_fn, x0, k) - x0) ** 2).mean().item() for k in (10, 50, 1000)}
    # Measured: 0.039, 0.0025, 7.1e-6. The encoder and decoder use eps at opposite ends of each step, so
    # their errors do not cancel at finite step counts.
    assert mse[10] > mse[50] > mse[1000]
    assert mse[10] > 0.01
    assert mse[1000] < 2e-5


def test_quadratic_spacing_and_model_kwargs_are_passed(diffusion: GaussianDiffusion) -> None:
    seen: list[tuple[int, float]] = []

    def model_fn(x: Tensor, t: Tensor, scale: float) -> Tensor:
        seen.append((int(t[0]), scale))
        return torch.zeros_like(x)

    x0 = torch.ones(2, 3)
    x_T = ddim_invert(diffusion, model_fn, x0, steps=5, spacing="quadratic", model_kwargs={"scale": 2.0})
    # Network calls at the mirror of the sampler's timesteps: t = 0 (for the -1 -> 0 step), then going up.
    assert [t for t, _ in seen] == [0, 0, 50, 200, 450] and all(sc == 2.0 for _, sc in seen)
    # eps = 0 gives x_t = sqrt(abar_t) x0 at the last visited timestep, 800 = 0.8 T.
    torch.testing.assert_close(x_T, diffusion.alphas_cumprod[800].sqrt() * x0)


def test_slerp_endpoints_are_exact() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 2, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, generator=gen)
    torch.testing.assert_close(slerp(a, b, 0.0), a, atol=1e-6, rtol=0)
    torch.testing.assert_close(slerp(a, b, 1.0), b, atol=1e-6, rtol=0)
    assert slerp(a, b, 0.5).shape == a.shape and slerp(a, b, 0.5).dtype == a.dtype


def test_slerp_of_orthogonal_unit_vectors() -> None:
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0]])
    # Midpoint of a quarter circle: (a + b) / sqrt(2), norm 1 (lerp would give norm 1 / sqrt(2)).
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([[1.0, 1.0, 0.0]]) / math.sqrt(2))
    for alpha in (0.1, 0.3, 0.7, 0.9):
        out = slerp(a, b, alpha)
        assert out.norm().item() == pytest.approx(1.0, abs=1e-6)
        angle = alpha * math.pi / 2  # alpha of the way along the quarter circle
        torch.testing.assert_close(out, torch.tensor([[math.cos(angle), math.sin(angle), 0.0]]))


def test_slerp_per_sample_alpha_and_parallel_fallback() -> None:
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [4.0, 0.0]])  # sample 1 is parallel: slerp is 0/0 there, lerp is used
    out = slerp(a, b, torch.tensor([0.5, 0.25]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    torch.testing.assert_close(out[1], torch.tensor([2.5, 0.0]))


def test_slerp_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        slerp(torch.zeros(1, 3), torch.zeros(1, 4), 0.5)
