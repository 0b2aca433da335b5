"""Schedules against closed forms, the derived buffers, and the DDIM timestep subsets."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.diffusion import GaussianDiffusion, cosine_betas, ddim_timesteps, linear_betas, make_betas


@pytest.mark.parametrize("T", [2, 10, 1000, 4000])
def test_linear_endpoints_are_exact_for_any_T_and_increasing(T: int) -> None:
    betas = linear_betas(T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert betas[0].item() == 1e-4 and betas[-1].item() == 0.02
    assert bool((betas[1:] > betas[:-1]).all())
    assert betas[T // 3].item() == pytest.approx(1e-4 + (0.02 - 1e-4) * (T // 3) / (T - 1), rel=1e-12)


def test_linear_custom_endpoints_and_errors() -> None:
    betas = linear_betas(5, 0.1, 0.5)
    assert betas.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-15)
    with pytest.raises(ValueError, match="beta_start"):
        linear_betas(5, 0.5, 0.1)
    with pytest.raises(ValueError, match="num_timesteps"):
        linear_betas(0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_alphas_cumprod_matches_cumprod_and_a_python_product(schedule: str) -> None:
    betas = make_betas(schedule, 1000)
    diffusion = GaussianDiffusion(betas)
    expected = torch.cumprod(1.0 - betas, dim=0)
    torch.testing.assert_close(diffusion.alphas_cumprod.double(), expected, rtol=1e-6, atol=0.0)
    for t in [0, 1, 17, 499, 998]:
        product = 1.0
        for s in range(t + 1):
            product *= 1.0 - betas[s].item()
        assert diffusion.alphas_cumprod[t].item() == pytest.approx(product, rel=1e-6)
        prev = 1.0 if t == 0 else product / (1.0 - betas[t].item())
        assert diffusion.alphas_cumprod_prev[t].item() == pytest.approx(prev, rel=1e-6)


@pytest.mark.parametrize("T", [50, 1000])
def test_cosine_alpha_bar_matches_closed_form_where_not_clipped(T: int) -> None:
    s, max_beta = 0.008, 0.999
    betas = cosine_betas(T, s=s, max_beta=max_beta)
    assert betas.dtype == torch.float64
    assert float(betas.max()) <= max_beta and float(betas.min()) > 0
    clipped = (betas == max_beta).nonzero().flatten().tolist()
    assert clipped == [T - 1]  # alpha_bar(1) = 0 would need beta = 1: only the last step is clipped

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    abar = GaussianDiffusion(betas).alphas_cumprod
    for t in range(T - 1):  # index t is the paper's timestep t + 1
        assert abar[t].item() == pytest.approx(f((t + 1) / T) / f(0.0), rel=1e-5)


def test_make_betas_dispatches_and_names_valid_schedules() -> None:
    torch.testing.assert_close(make_betas("linear", 7, beta_start=0.01, beta_end=0.2), linear_betas(7, 0.01, 0.2))
    torch.testing.assert_close(make_betas("cosine", 7, s=0.01), cosine_betas(7, s=0.01))
    with pytest.raises(ValueError, match="linear, cosine"):
        make_betas("quadratic", 10)


def test_buffers_are_float32_non_persistent_and_no_parameters() -> None:
    diffusion = GaussianDiffusion(linear_betas(100))
    names = [name for name, _ in diffusion.named_buffers()]
    for required in [
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef1",
        "posterior_mean_coef2",
    ]:
        assert required in names
    assert all(buf.dtype == torch.float32 and buf.shape == (100,) for buf in diffusion.buffers())
    assert diffusion.state_dict() == {}
    assert list(diffusion.parameters()) == []
    assert diffusion.num_timesteps == 100


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("T,steps", [(1, 1), (2, 2), (10, 1), (10, 3), (10, 5), (37, 36), (1000, 50), (1000, 999)])
def test_ddim_timesteps_properties(spacing: str, T: int, steps: int) -> None:
    ts = ddim_timesteps(T, steps, spacing)
    assert len(ts) == steps and all(isinstance(t, int) for t in ts)
    assert all(a > b for a, b in zip(ts, ts[1:]))  # strictly decreasing, hence distinct
    assert ts[-1] == 0 and ts[0] <= T - 1
    if spacing == "uniform" and steps > 1:
        assert ts[0] == T - 1
        gaps = {a - b for a, b in zip(ts, ts[1:])}
        assert max(gaps) - min(gaps) <= 1  # an even spread


def test_ddim_timesteps_fixed_values() -> None:
    uniform = ddim_timesteps(1000, 50)
    assert uniform[:4] == [999, 979, 958, 938] and uniform[-3:] == [41, 20, 0]
    assert ddim_timesteps(10, 5) == [9, 7, 5, 2, 0]
    # DDIM's floor((k sqrt(0.8 T) / (S-1))^2) = 0, 0, 2, 4, 8; the repeated 0 is pushed up to 1.
    assert ddim_timesteps(10, 5, "quadratic") == [8, 4, 2, 1, 0]
    quadratic = ddim_timesteps(1000, 50, "quadratic")
    assert quadratic[0] == 800 and quadratic[1] == math.floor(800 * 48**2 / 49**2)
    for spacing in ["uniform", "quadratic"]:
        assert ddim_timesteps(12, 12, spacing) == list(range(11, -1, -1))


def test_ddim_timesteps_errors_name_the_limit() -> None:
    with pytest.raises(ValueError, match=r"\[1, num_timesteps=10\]"):
        ddim_timesteps(10, 11)
    with pytest.raises(ValueError, match=r"\[1, num_timesteps=10\]"):
        ddim_timesteps(10, 0)
    with pytest.raises(ValueError, match="uniform, quadratic"):
        ddim_timesteps(10, 5, "cubic")
