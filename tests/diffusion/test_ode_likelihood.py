"""The probability-flow ODE's log-likelihood against closed forms: Gaussian data, whose exact eps is known, has the
Gaussian's log-density, for a generic eps field and through the Denoiser of each process (VP, flow, EDM)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from genlab.diffusion import EDM, FlowMatching, GaussianDiffusion, make_betas
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.ode_likelihood import (
    denoiser_eps,
    dequantize,
    ode_log_likelihood,
    ode_nll_bpd,
    nll_points,
)
from genlab.diffusion.time_grids import GridPoint

T = 1000
S = 0.5  # the isotropic toy's data: x0 ~ N(0, s^2 I)


def ve_points(r_min: float, r_max: float, steps: int) -> list[GridPoint]:
    """Noise levels r = sigma / alpha, increasing and uniform in log r, as VP grid points."""
    rs = torch.logspace(math.log10(r_min), math.log10(r_max), steps + 1, dtype=torch.float64)
    return [GridPoint(t=float(r), alpha=1 / math.hypot(1, r), sigma=r / math.hypot(1, r)) for r in rs.tolist()]


def gaussian_logp(x: Tensor, cov: Tensor) -> Tensor:
    return torch.distributions.MultivariateNormal(torch.zeros(len(cov), dtype=cov.dtype), cov).log_prob(x.flatten(1))


def test_a_correlated_gaussian_has_its_log_density_and_hutchinson_is_unbiased() -> None:
    g = torch.Generator().manual_seed(0)
    D = 6
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = a @ a.T / D + 0.2 * torch.eye(D, dtype=torch.float64)  # non-diagonal: Hutchinson's probe has variance

    def eps_fn(x: Tensor, p: GridPoint) -> Tensor:  # E[n | x~] for x~ = x / alpha = x0 + r n: r (cov + r^2 I)^-1 x~
        r = p.sigma_ve
        return r * torch.linalg.solve(cov + r * r * torch.eye(D, dtype=x.dtype), x.T / p.alpha).T

    x = torch.randn(4, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    points = ve_points(1e-3, 1e3, 40)
    exact = ode_log_likelihood(eps_fn, x, points, exact=True)
    truth = gaussian_logp(x, cov + points[0].sigma_ve ** 2 * torch.eye(D, dtype=torch.float64))
    torch.testing.assert_close(exact, truth, atol=5e-3, rtol=0)
    probes = torch.stack([ode_log_likelihood(eps_fn, x, points, generator=torch.Generator().manual_seed(k))
                          for k in range(200)])
    assert probes.std(0).min() > 1e-3  # the probe matters here...
    torch.testing.assert_close(probes.mean(0), exact, atol=4 * float(probes.std(0).max()) / math.sqrt(200), rtol=0)


def test_the_error_falls_at_heuns_order() -> None:
    def eps_fn(x: Tensor, p: GridPoint) -> Tensor:
        r = p.sigma_ve
        return r / (S * S + r * r) * x / p.alpha

    x = S * torch.randn(8, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errors = []
    for steps in (5, 10, 20):
        points = ve_points(0.01, 80.0, steps)
        truth = gaussian_logp(x, (S * S + 0.01**2) * torch.eye(5, dtype=torch.float64))
        got = ode_log_likelihood(eps_fn, x, points, exact=True)
        errors.append(float((got - truth).abs().max()))
        assert abs(float((got - truth).mean())) < 0.5 or steps == 5  # sanity: close once the grid is fine
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert min(rates) > 1.6, (errors, rates)


def exact_vp_eps(diffusion: GaussianDiffusion) -> object:
    schedule = diffusion.schedule()

    def net(x: Tensor, t: Tensor) -> Tensor:  # E[eps | x_t] = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar)
        abar = schedule.alpha_bar(t.double()).view(-1, 1, 1, 1)
        return ((1 - abar).sqrt() * x.double() / (abar * S * S + 1 - abar)).to(x.dtype)
    return net


def exact_flow_velocity(x: Tensor, t_net: Tensor) -> Tensor:
    t = (t_net.double() / T).view(-1, 1, 1, 1)
    return ((t - (1 - t) * S * S) * x.double() / ((1 - t) ** 2 * S * S + t**2)).to(x.dtype)


def exact_edm_f(edm: EDM) -> object:
    def net(x_in: Tensor, t: Tensor) -> Tensor:  # F whose D is the exact denoiser s^2 / (s^2 + sigma^2) x
        sigma = edm.sigma_of(t).view(-1, 1, 1, 1)
        c_skip, c_out, c_in = edm.preconditioning(sigma)
        x = x_in.double() / c_in
        return ((S * S / (S * S + sigma**2) * x - c_skip * x) / c_out).to(x_in.dtype)
    return net


def denoisers() -> dict[str, Denoiser]:
    vp, edm = GaussianDiffusion(make_betas("cosine", T)), EDM(T)
    return {"vp": Denoiser(exact_vp_eps(vp), vp), "flow": Denoiser(exact_flow_velocity, FlowMatching(T)),
            "edm": Denoiser(exact_edm_f(edm), edm)}


@pytest.mark.parametrize("process", ["vp", "flow", "edm"])
def test_every_process_gives_the_gaussians_log_density(process: str) -> None:
    denoiser = denoisers()[process]
    points = nll_points(denoiser, steps=80)
    x = S * torch.randn(6, 1, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = ode_log_likelihood(denoiser_eps(denoiser), x, points, generator=torch.Generator().manual_seed(0))
    truth = gaussian_logp(x, (S * S + points[0].sigma_ve ** 2) * torch.eye(9, dtype=torch.float64))
    # Heun's error at 80 steps (0.004 at most); 40 steps, the default, are within 0.02 nats over these 9 dimensions.
    torch.testing.assert_close(got, truth, atol=5e-3, rtol=0)


def test_bits_per_dim_of_8_bit_images() -> None:
    """ode_nll_bpd = -E log p(dequantised) / (D ln 2) + log2(127.5); the dequantised images stay in their bins."""
    x0 = torch.randint(0, 256, (4, 1, 3, 3), generator=torch.Generator().manual_seed(3)).double() / 127.5 - 1
    spread = dequantize(x0, torch.Generator().manual_seed(4))
    assert float((spread - x0).abs().max()) <= 1 / 255 and float((spread - x0).abs().max()) > 0.5 / 255
    denoiser = denoisers()["flow"]
    bpd = ode_nll_bpd(denoiser, x0, steps=20, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same stream: the dequantisation draws first, then the probe
    logp = ode_log_likelihood(denoiser_eps(denoiser), dequantize(x0, g), nll_points(denoiser, 20), generator=g)
    torch.testing.assert_close(bpd, -logp / (9 * math.log(2)) + math.log2(127.5))


def test_points_must_rise() -> None:
    points = ve_points(0.1, 10.0, 4)
    with pytest.raises(ValueError, match="increasing noise"):
        ode_log_likelihood(lambda x, p: x, torch.zeros(1, 2), points[::-1])
