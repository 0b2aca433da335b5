"""Samplers with a fake pure-function network: against scalar float64 references written from the papers."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from genlab.diffusion import (
    GaussianDiffusion,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    linear_betas,
    make_betas,
)

T = 10
BETA_START, BETA_END = 0.05, 0.4  # large betas so that 10 steps go from nearly pure noise to data
SHAPE = (2, 1, 3, 4)


def fake_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A pure function of (x, t) standing in for the network; it depends on the original timestep t."""
    return torch.sin(3 * x) * ((t.to(x.dtype) + 1) / T).view(-1, *([1] * (x.ndim - 1)))  # [B] -> [B, 1, 1, 1]


def fake_eps_scalar(x: float, t: int) -> float:
    return math.sin(3 * x) * (t + 1) / T


def small_diffusion(variance: str = "beta_tilde") -> GaussianDiffusion:
    return GaussianDiffusion(linear_betas(T, BETA_START, BETA_END), variance=variance)


def x_T_fixed() -> torch.Tensor:
    return torch.linspace(-2.5, 2.5, math.prod(SHAPE)).view(SHAPE)  # reaches past [-1, 1]: clipping matters


# ---- scalar float64 references, written from the papers and sharing no code with genlab ----

REF_BETAS = [BETA_START + (BETA_END - BETA_START) * i / (T - 1) for i in range(T)]
REF_ABAR = [math.prod(1.0 - b for b in REF_BETAS[: i + 1]) for i in range(T)]


def ref_ddim(x: list[float], pairs: list[tuple[int, int]], eta: float, noises: list[list[float]], clip: bool):
    for k, (t, t_prev) in enumerate(pairs):
        a = REF_ABAR[t]
        a_prev = REF_ABAR[t_prev] if t_prev >= 0 else 1.0
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)  # DDIM eq. 16
        z = noises[k] if k < len(noises) else [0.0] * len(x)
        new = []
        for xi, zi in zip(x, z):
            e = fake_eps_scalar(xi, t)
            x0 = (xi - math.sqrt(1 - a) * e) / math.sqrt(a)
            if clip:
                x0 = min(1.0, max(-1.0, x0))
                e = (xi - math.sqrt(a) * x0) / math.sqrt(1 - a)
            new.append(math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma**2) * e + sigma * zi)  # DDIM eq. 12
        x = new
    return x


def ref_ddpm(x: list[float], variance: str, noises: list[list[float]], clip: bool) -> list[float]:
    for k, t in enumerate(range(T - 1, -1, -1)):
        beta, a = REF_BETAS[t], REF_ABAR[t]
        a_prev = REF_ABAR[t - 1] if t > 0 else 1.0
        var = beta * (1 - a_prev) / (1 - a) if variance == "beta_tilde" else beta
        new = []
        for i, xi in enumerate(x):
            x0 = (xi - math.sqrt(1 - a) * fake_eps_scalar(xi, t)) / math.sqrt(a)
            if clip:
                x0 = min(1.0, max(-1.0, x0))
            # DDPM eq. 7: posterior mean at the predicted x0
            mean = math.sqrt(a_prev) * beta / (1 - a) * x0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * xi
            new.append(mean + (math.sqrt(var) * noises[k][i] if t > 0 else 0.0))
        x = new
    return x


def draws(seed: int, n: int) -> tuple[torch.Generator, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return g, [torch.randn(SHAPE, generator=g) for _ in range(n)]


# ---- tests ----


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(
    "spacing,pairs",
    [
        ("uniform", [(9, 7), (7, 5), (5, 2), (2, 0), (0, -1)]),
        ("quadratic", [(8, 4), (4, 2), (2, 1), (1, 0), (0, -1)]),
    ],
)
def test_ddim_sample_matches_scalar_reference(clip: bool, eta: float, spacing: str, pairs: list) -> None:
    x_T = x_T_fixed()
    g = torch.Generator().manual_seed(7)
    out = ddim_sample(
        small_diffusion(), fake_eps, SHAPE, steps=5, eta=eta, spacing=spacing, x_T=x_T, generator=g, clip_denoised=clip
    )
    # Noise order: one draw per step except the last, only when eta > 0.
    _, noises = draws(7, len(pairs) - 1 if eta > 0 else 0)
    expected = ref_ddim(x_T.flatten().tolist(), pairs, eta, [z.flatten().tolist() for z in noises], clip)
    torch.testing.assert_close(out.flatten(), torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=2e-5)


def test_ddim_fixed_numbers() -> None:
    # Computed once with the float64 reference above (uniform spacing, eta = 0), then frozen.
    clipped = ddim_sample(small_diffusion(), fake_eps, SHAPE, steps=5, x_T=x_T_fixed(), clip_denoised=True)
    expected = [-1.0, -0.72371725, -0.034453138, -0.0072624845, 0.0017320837]
    torch.testing.assert_close(clipped.flatten()[7:12], torch.tensor(expected), rtol=1e-5, atol=2e-6)
    unclipped = ddim_sample(small_diffusion(), fake_eps, SHAPE, steps=5, x_T=x_T_fixed(), clip_denoised=False)
    expected = [-8.4869805, -7.4495819, -0.72371725, -0.0017320837, 3.6345515, 8.4903006]
    torch.testing.assert_close(unclipped.flatten()[::4], torch.tensor(expected), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_sample_matches_scalar_reference(clip: bool, variance: str) -> None:
    out = ddpm_sample(
        small_diffusion(variance), fake_eps, SHAPE, generator=torch.Generator().manual_seed(11), clip_denoised=clip
    )
    # Draw order: x_T, then one draw for each t = T-1, ..., 1.
    _, (x_T, *noises) = draws(11, 1 + T - 1)
    expected = ref_ddpm(x_T.flatten().tolist(), variance, [z.flatten().tolist() for z in noises], clip)
    torch.testing.assert_close(out.flatten(), torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=2e-5)


def test_ddim_eta0_is_deterministic_given_x_T() -> None:
    diffusion, x_T = small_diffusion(), x_T_fixed()
    a = ddim_sample(diffusion, fake_eps, SHAPE, steps=5, x_T=x_T, generator=torch.Generator().manual_seed(0))
    b = ddim_sample(diffusion, fake_eps, SHAPE, steps=5, x_T=x_T.clone(), generator=torch.Generator().manual_seed(1))
    c = ddim_sample(diffusion, fake_eps, SHAPE, steps=5, x_T=x_T.clone())
    assert torch.equal(a, b) and torch.equal(a, c)


def test_samplers_reproduce_with_a_seed_and_differ_across_seeds() -> None:
    diffusion = small_diffusion()
    for sample in [
        lambda seed: ddpm_sample(diffusion, fake_eps, SHAPE, generator=torch.Generator().manual_seed(seed)),
        lambda seed: ddim_sample(
            diffusion, fake_eps, SHAPE, steps=4, eta=1.0, generator=torch.Generator().manual_seed(seed)
        ),
    ]:
        assert torch.equal(sample(3), sample(3))
        assert not torch.allclose(sample(3), sample(4))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_sigma_with_eta1_over_all_steps_is_the_posterior_variance(schedule: str) -> None:
    betas = make_betas(schedule, 1000)
    diffusion = GaussianDiffusion(betas)
    abar = torch.cumprod(1 - betas, 0)  # float64, independent of the buffers
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    sigma2 = ddim_sigma(abar, abar_prev, 1.0) ** 2
    torch.testing.assert_close(sigma2.float(), diffusion.posterior_variance, rtol=1e-5, atol=1e-12)
    assert ddim_sigma(0.5, 0.8, 0.5) == pytest.approx(0.5 * math.sqrt(0.2 / 0.5 * (1 - 0.5 / 0.8)))
    assert ddim_sigma(0.5, 0.8, 0.0) == 0.0


# DDIM sees abar_t and abar_prev only as float32 buffers, and near t = 0 (abar close to 1) 1 - abar keeps just
# a few digits: 1 - abar_0 = 1e-4 at T = 1000 carries a relative error ~6e-4, and the recomputed eps divides by
# sqrt(1 - abar_t). DDPM's coefficients were formed in float64. Hence the looser tolerance at T = 1000 (measured 8e-4).
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize(
    "betas,atol",
    [(linear_betas(T, BETA_START, BETA_END), 1e-5), (linear_betas(1000), 2e-3), (make_betas("cosine", 1000), 2e-3)],
    ids=["T10", "T1000-linear", "T1000-cosine"],
)
def test_one_ddim_eta1_step_equals_the_ddpm_step(clip: bool, betas: torch.Tensor, atol: float) -> None:
    diffusion = GaussianDiffusion(betas, variance="beta_tilde")
    n = diffusion.num_timesteps
    t = torch.arange(n)  # every timestep at once, one per sample
    g = torch.Generator().manual_seed(5)
    x_t = 2 * torch.randn(n, 3, 4, generator=g)
    z = torch.randn(n, 3, 4, generator=g)
    eps = fake_eps(x_t, t)
    out = diffusion.p_mean_variance_from_eps(x_t, t, eps, clip_denoised=clip)
    alpha_bar_t = diffusion.extract(diffusion.alphas_cumprod, t, x_t)
    alpha_bar_prev = diffusion.extract(diffusion.alphas_cumprod_prev, t, x_t)

    deterministic = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, 1.0, torch.zeros_like(x_t), clip)
    torch.testing.assert_close(deterministic, out["mean"], rtol=1e-5, atol=atol)
    sigma = ddim_sigma(alpha_bar_t.double(), alpha_bar_prev.double(), 1.0)
    torch.testing.assert_close(sigma.float() ** 2, out["variance"], rtol=1e-5 if n == T else 1e-3, atol=1e-12)
    full = ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, 1.0, z, clip)
    torch.testing.assert_close(full, ddpm_step(diffusion, out, t, z), rtol=1e-5, atol=atol)


def test_ddpm_step_adds_no_noise_at_t0() -> None:
    diffusion = small_diffusion("beta")
    x = torch.ones(2, 3)
    out = diffusion.p_mean_variance_from_eps(x, torch.tensor([0, 1]), torch.zeros_like(x))
    step = ddpm_step(diffusion, out, torch.tensor([0, 1]), torch.full_like(x, 10.0))
    assert torch.equal(step[0], out["mean"][0])
    torch.testing.assert_close(step[1], out["mean"][1] + 10 * diffusion.betas[1].sqrt())


def test_network_sees_original_timesteps_kwargs_and_no_grad() -> None:
    seen = []

    def spy(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        assert t.dtype == torch.long and t.shape == (SHAPE[0],) and torch.equal(y, torch.tensor([3, 4]))
        assert not torch.is_grad_enabled()
        seen.append(int(t[0]))
        return fake_eps(x, t)

    kwargs = {"y": torch.tensor([3, 4])}
    ddim_sample(small_diffusion(), spy, SHAPE, steps=5, model_kwargs=kwargs)
    assert seen == [9, 7, 5, 2, 0]
    seen.clear()
    ddpm_sample(small_diffusion(), spy, SHAPE, model_kwargs=kwargs)
    assert seen == list(range(T - 1, -1, -1))


def test_a_gradient_guidance_wrapper_composes_with_the_no_grad_loops() -> None:
    diffusion = small_diffusion()

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():  # how a classifier-guidance wrapper gets d log p(y | x_t) / dx_t
            x_in = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(-(x_in**2).sum(), x_in)
        return fake_eps(x, t) - 0.1 * grad

    out = ddim_sample(diffusion, guided, SHAPE, steps=5, x_T=x_T_fixed())
    plain = ddim_sample(diffusion, fake_eps, SHAPE, steps=5, x_T=x_T_fixed())
    assert torch.isfinite(out).all() and not out.requires_grad and not torch.equal(out, plain)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_sweep_gives_finite_images_of_the_right_shape(schedule: str, variance: str, spacing: str, eta: float) -> None:
    diffusion = GaussianDiffusion(make_betas(schedule, 20), variance=variance)
    shape = (3, 2, 4, 4)
    g = torch.Generator().manual_seed(0)
    ddim = ddim_sample(diffusion, fake_eps, shape, steps=6, eta=eta, spacing=spacing, generator=g)
    assert ddim.shape == shape and torch.isfinite(ddim).all() and ddim.abs().max() < 10
    if spacing == "uniform" and eta == 0.0:  # DDPM ignores spacing and eta: run it once per schedule x variance
        ddpm = ddpm_sample(diffusion, fake_eps, shape, generator=g, clip_denoised=False)
        assert ddpm.shape == shape and torch.isfinite(ddpm).all()


def test_sampler_errors() -> None:
    diffusion = small_diffusion()
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(diffusion, fake_eps, SHAPE, steps=5, eta=-0.1)
    with pytest.raises(ValueError, match="num_timesteps=10"):
        ddim_sample(diffusion, fake_eps, SHAPE, steps=11)
    with pytest.raises(ValueError, match="x_T has shape"):
        ddpm_sample(diffusion, fake_eps, SHAPE, x_T=torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="noise"):
        ddim_step(torch.zeros(2), torch.zeros(2), 0.5, 0.8, 0.5, None, False)


def test_progress_bar(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ddim_sample(small_diffusion(), fake_eps, SHAPE, steps=3, progress=True)
    assert "DDIM" not in capsys.readouterr().err  # stderr redirected (to a file, a pipe): no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal
    ddim_sample(small_diffusion(), fake_eps, SHAPE, steps=3, progress=True)
    assert "DDIM" in capsys.readouterr().err
