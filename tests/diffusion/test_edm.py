"""EDM (Karras et al. 2022): the preconditioning of Table 1 in closed form, the loss as lambda(sigma) |D - x0|^2, the VP
view, the solvers' orders on a Gaussian toy with the exact denoiser, Algorithm 2, Euler / DPM-Solver++ against
diffusers' EDM schedulers, and Heun against diffusers' Heun on EDM's sigmas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from conftest import SOLVER_ORDERS, assert_solver_order
from genlab.diffusion import EDM, grid_points, run_sampler
from genlab.diffusion.time_grids import karras_sigmas

EDM_ = EDM(1000)
DATA_STD = 0.5  # the toy's data: x0 ~ N(0, s^2 I); also EDM's sigma_data


def exact_f(x_in: Tensor, t: Tensor) -> Tensor:
    """F whose D is the exact denoiser of the toy: D*(x; sigma) = s^2 / (s^2 + sigma^2) x, F = (D - c_skip x) / c_out."""
    sigma = EDM_.sigma_of(t).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1], float64
    c_skip, c_out, c_in = EDM_.preconditioning(sigma)
    x = x_in.double() / c_in
    return ((DATA_STD**2 / (DATA_STD**2 + sigma**2) * x - c_skip * x) / c_out).to(x_in.dtype)


def test_preconditioning_is_table_1() -> None:
    for sigma in (0.002, 0.5, 1.0, 80.0):
        c_skip, c_out, c_in = EDM_.preconditioning(sigma)
        sd2 = DATA_STD**2
        assert c_skip == pytest.approx(sd2 / (sigma**2 + sd2)) and c_in == pytest.approx(1 / math.sqrt(sigma**2 + sd2))
        assert c_out == pytest.approx(sigma * DATA_STD / math.sqrt(sigma**2 + sd2))
        weight = (sigma**2 + sd2) / (sigma * DATA_STD) ** 2  # lambda(sigma), Table 1
        assert weight * c_out**2 == pytest.approx(1.0)  # so the F-loss is lambda |D - x0|^2
    t = EDM_.time_of(torch.tensor([0.002, 80.0], dtype=torch.float64))
    torch.testing.assert_close(t, torch.tensor([0.0, 1000.0]))
    torch.testing.assert_close(EDM_.sigma_of(torch.tensor([0.0, 500.0])), torch.tensor([0.002, math.sqrt(0.002 * 80)],
                                                                                       dtype=torch.float64))


def test_the_loss_is_lambda_times_the_denoiser_error() -> None:
    x0, noise = torch.randn(4, 1, 3, 3, dtype=torch.float64), torch.randn(4, 1, 3, 3, dtype=torch.float64)
    t = torch.tensor([10.0, 300.0, 600.0, 990.0], dtype=torch.float64)

    def net(x_in: Tensor, t_in: Tensor) -> Tensor:
        return torch.sin(x_in) + t_in.view(-1, 1, 1, 1) / 1000

    terms = EDM_.training_losses(net, x0, t, noise=noise)
    sigma = EDM_.sigma_of(t).view(-1, 1, 1, 1)
    c_skip, c_out, c_in = EDM_.preconditioning(sigma)
    x = x0 + sigma * noise
    d = c_skip * x + c_out * net(c_in * x, t)
    weight = (sigma**2 + DATA_STD**2) / (sigma * DATA_STD) ** 2
    torch.testing.assert_close(terms["loss"], (weight * (d - x0) ** 2).mean(dim=(1, 2, 3)))
    exact = EDM_.training_losses(exact_f, x0, t, noise=noise)  # the toy's exact F has the toy's (small) error
    assert exact["loss"].shape == (4,) and bool((exact["loss"] >= 0).all())


def test_training_sigmas_are_log_normal() -> None:
    t = EDM_.sample_times(40000, "cpu", torch.Generator().manual_seed(0))
    log_sigma = torch.log(EDM_.sigma_of(t))
    assert abs(log_sigma.mean() + 1.2) < 0.02 and abs(log_sigma.std() - 1.2) < 0.02  # P_mean, P_std


def test_the_vp_view_and_the_karras_grid() -> None:
    schedule = EDM_.schedule()
    for sigma in (0.002, 1.0, 80.0):
        p = schedule.point(sigma)
        assert p.alpha**2 + p.sigma**2 == pytest.approx(1.0) and p.sigma_ve == pytest.approx(sigma)
        assert schedule.point_of_sigma(sigma).t == pytest.approx(sigma)
    sigmas = torch.tensor([p.t for p in grid_points(schedule, 18, "karras")[:-1]], dtype=torch.float64)
    torch.testing.assert_close(sigmas, karras_sigmas(0.002, 80.0, 18, 7.0))  # eq. 5, sigma_max = 80 to 0.002
    x0, eps = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    p = schedule.point(3.0)
    x_in, _ = EDM_.network_input(p.alpha * (x0 + 3.0 * eps), torch.full((2,), 3.0), p)
    c_skip, c_out, c_in = EDM_.preconditioning(3.0)
    back_x0, back_eps = EDM_.denoised((x0 - c_skip * x_in / c_in) / c_out, x_in, p)  # the exact F gives x0, eps
    torch.testing.assert_close(back_x0, x0)
    torch.testing.assert_close(back_eps, eps)


@pytest.mark.parametrize("name", list(SOLVER_ORDERS))
def test_each_solver_converges_at_its_order_on_the_gaussian_toy(name: str) -> None:
    sigma_max = 80.0
    noise = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_vp = noise * sigma_max / math.sqrt(1 + sigma_max**2)  # EDM's x_T = sigma_max n as a VP sample
    # The toy's ODE scales x by sqrt(s^2 + sigma^2): from sigma_max to 0, x0 = x s / sqrt(s^2 + sigma_max^2).
    target = noise * sigma_max * DATA_STD / math.sqrt(DATA_STD**2 + sigma_max**2)
    spacing = "logsnr" if name in ("dpmpp_2m", "unipc") else "karras"
    assert_solver_order(name, EDM_, exact_f, x_vp, target, spacing)


def test_algorithm_2_raises_the_noise_and_is_reproducible() -> None:
    x_T = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    plain = run_sampler("heun", EDM_, exact_f, x_T, steps=10, spacing="karras", clip=False)
    assert torch.equal(plain, run_sampler("heun", EDM_, exact_f, x_T, steps=10, spacing="karras", clip=False,
                                          s_churn=40.0, s_tmin=100.0, s_tmax=200.0))  # no sigma in [100, 200]

    def churned(seed: int) -> Tensor:
        return run_sampler("heun", EDM_, exact_f, x_T, steps=10, spacing="karras", clip=False, s_churn=40.0,
                           s_tmin=0.05, s_tmax=50.0, s_noise=1.003, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(churned(1), churned(1)) and not torch.allclose(churned(1), churned(2))
    assert (churned(1) - plain).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m"])
@pytest.mark.parametrize("rho, sigma_max", [(None, None), (2.0, 30.0)])  # the paper's grid; the 5-NFE one
def test_euler_and_dpm_solver_match_diffusers_edm_schedulers(name: str, rho: float | None,
                                                             sigma_max: float | None) -> None:
    diffusers = pytest.importorskip("diffusers")
    w = 0.3 * torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(1))

    def f_of(x_in: Tensor, sigma: Tensor) -> Tensor:  # a toy F of (c_in x, sigma): the exact one and a conv term
        t = EDM_.time_of(sigma.double())
        wobble = torch.tanh(torch.nn.functional.conv2d(x_in, w.to(x_in.dtype), padding=1))
        return exact_f(x_in, t) + 0.2 * wobble * torch.cos(torch.log(sigma)).view(-1, 1, 1, 1).to(x_in.dtype)

    for steps in (5, 10, 20):
        kwargs = dict(sigma_min=0.002, sigma_max=sigma_max or 80.0, sigma_data=DATA_STD, rho=rho or 7.0)
        if name == "euler":
            scheduler = diffusers.EDMEulerScheduler(**kwargs)
        else:
            scheduler = diffusers.EDMDPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                                 final_sigmas_type="zero", **kwargs)
        scheduler.set_timesteps(steps)  # its Karras grid is genlab's (checked above)
        noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(steps))
        x = noise * scheduler.sigmas[0]  # EDM's x_T = sigma_max n (diffusers' init_noise_sigma is sqrt(sigma^2 + 1))
        for t in scheduler.timesteps:  # diffusers passes c_noise = ln(sigma) / 4
            x = scheduler.step(f_of(scheduler.scale_model_input(x, t), torch.exp(4 * t.double()).expand(2)), t,
                               x).prev_sample
        first = float(scheduler.sigmas[0])
        x_vp = noise * first / math.sqrt(1 + first**2)
        # The grid's shape is the sampler's: the network's time mapping (EDM_'s sigma range) is untouched.
        ours = run_sampler(name, EDM_, lambda x_in, t_in: f_of(x_in, EDM_.sigma_of(t_in)), x_vp, steps=steps,
                           spacing="karras", clip=False, rho=rho, sigma_max=sigma_max)
        exact = run_sampler(name, EDM_, lambda x_in, t_in: f_of(x_in, EDM_.sigma_of(t_in)), x_vp.double(),
                            steps=steps, spacing="karras", clip=False, rho=rho, sigma_max=sigma_max)
        # genlab is within 1e-6 of the same arithmetic in float64; diffusers' float32 steps from the same x_T agree
        # with it to 2.4e-6 at most (measured on both grids), so to 1e-5, the parity bound.
        assert (ours.double() - exact).abs().max() < 1e-6
        assert (ours - x).abs().max() < 1e-5, (name, steps, float((ours - x).abs().max()))


def test_heun_matches_diffusers_heun_on_the_edm_grid() -> None:
    """diffusers has no EDM Heun scheduler; its HeunDiscreteScheduler (x0 output, gamma = 0) run on EDM's Karras sigmas
    is Algorithm 2 without churn, the deterministic sampler of Karras et al. 2022, and genlab's `heun` must match it."""
    diffusers = pytest.importorskip("diffusers")
    w = 0.3 * torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(2))

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:  # D(x; sigma) of a toy F, the exact one and a conv term,
        sigma = sigma.double().view(-1, 1, 1, 1)  # computed in float64 so that only the samplers' arithmetic differs
        c_skip, c_out, c_in = EDM_.preconditioning(sigma)
        x_in = c_in * x.double()
        wobble = torch.tanh(torch.nn.functional.conv2d(x_in, w.double(), padding=1))
        f = exact_f(x_in, EDM_.time_of(sigma.flatten())) + 0.2 * wobble * torch.cos(torch.log(sigma))
        return (c_skip * x.double() + c_out * f).to(x.dtype)

    def f_of(x_in: Tensor, t_in: Tensor) -> Tensor:  # the same toy as genlab's network sees it
        sigma = EDM_.sigma_of(t_in.double()).view(-1, 1, 1, 1)
        c_skip, c_out, c_in = EDM_.preconditioning(sigma)
        x = x_in.double() / c_in
        return ((denoiser(x, sigma.flatten()) - c_skip * x) / c_out).to(x_in.dtype)

    def diffusers_heun(noise: Tensor, steps: int) -> Tensor:
        sigmas = karras_sigmas(0.002, 80.0, steps, 7.0)  # Karras eq. 5, the grid both samplers walk
        scheduler = diffusers.HeunDiscreteScheduler(prediction_type="sample")
        scheduler.set_timesteps(steps)
        layout = torch.cat([sigmas[:1], sigmas[1:].repeat_interleave(2), torch.zeros(1, dtype=torch.float64)])
        scheduler.sigmas = layout.to(noise.dtype)  # diffusers' layout: [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0]
        scheduler.timesteps = layout[:-1].to(noise.dtype)  # opaque step keys; the loop reads sigma from them
        x = noise * 80.0
        for key in scheduler.timesteps:
            x = scheduler.step(denoiser(x, key.double().expand(2)), key, x).prev_sample
        return x

    for steps in (5, 10, 20):
        noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(steps))
        x_vp = noise * 80.0 / math.sqrt(1 + 80.0**2)
        exact = run_sampler("heun", EDM_, f_of, x_vp.double(), steps=steps, spacing="karras", clip=False)
        # The same algorithm: in float64 they differ only by the float32 time genlab hands its network (2.5e-7).
        assert (diffusers_heun(noise.double(), steps) - exact).abs().max() < 1e-6
        ours = run_sampler("heun", EDM_, f_of, x_vp, steps=steps, spacing="karras", clip=False)
        theirs = diffusers_heun(noise, steps)
        # In float32 both are within 1e-5 of that float64 result (7.7e-6 and 6.1e-6 at 5 steps, where rounding
        # errors are amplified most), so they agree to 2e-5 there and to 1.1e-6 from 10 steps on.
        assert (ours.double() - exact).abs().max() < 1e-5 and (theirs.double() - exact).abs().max() < 1e-5
        assert (ours - theirs).abs().max() < (2e-5 if steps == 5 else 2e-6), (steps, float((ours - theirs).abs().max()))
