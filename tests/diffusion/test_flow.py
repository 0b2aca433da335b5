"""Flow matching: the path and its velocity target in closed form, its VP view for the ODE solvers, the solvers'
orders on a Gaussian toy whose exact velocity is known, and Euler against diffusers' FlowMatchEulerDiscreteScheduler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from conftest import SOLVER_ORDERS, assert_solver_order
from genlab.diffusion import FlowMatching, FlowSchedule, grid_points, run_sampler, sampler_entry
from genlab.diffusion.flow import shifted

T = 1000
FLOW = FlowMatching(T)
DATA_STD = 0.5  # the toy's data: x0 ~ N(0, s^2 I)


def exact_velocity(x: Tensor, t_net: Tensor) -> Tensor:
    """u*(x_t, t) = E[eps - x0 | x_t] for x0 ~ N(0, s^2 I): (t - (1 - t) s^2) x_t / ((1 - t)^2 s^2 + t^2)."""
    t = (t_net.double() / T).view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
    s2 = DATA_STD**2
    return ((t - (1 - t) * s2) * x.double() / ((1 - t) ** 2 * s2 + t**2)).to(x.dtype)


def x_T(t0: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """A VP sample at flow time t0 whose flow sample x_t0 ~ N(0, (1 - t0)^2 s^2 + t0^2) has unit-scale noise."""
    return torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=dtype) / math.hypot(1 - t0, t0)


def exact_x0(x_vp: Tensor, t0: float) -> Tensor:
    """The ODE of the Gaussian toy scales x_t by sqrt(V(t)): from t0 to 0, x0 = x_t0 s / sqrt(V(t0))."""
    x_t0 = x_vp * math.hypot(1 - t0, t0)
    return x_t0 * DATA_STD / math.sqrt((1 - t0) ** 2 * DATA_STD**2 + t0**2)


def test_the_path_and_the_velocity_target() -> None:
    x0, noise = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    t = torch.tensor([0.0, 250.0, 1000.0])
    x_t = FLOW.path(x0, t, noise)
    torch.testing.assert_close(x_t[0], x0[0])
    torch.testing.assert_close(x_t[2], noise[2])
    torch.testing.assert_close(x_t[1], 0.75 * x0[1] + 0.25 * noise[1])
    exact = FLOW.training_losses(lambda x, t: noise - x0, x0, t, noise=noise)
    assert exact["loss"].abs().max() == 0 and set(exact) == {"target_mse", "loss"}
    zero = FLOW.training_losses(lambda x, t: torch.zeros_like(x), x0, t, noise=noise)
    torch.testing.assert_close(zero["target_mse"], ((noise - x0) ** 2).mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="one term, target_mse"):
        FLOW.training_losses(lambda x, t: x, x0, t, weights={"eps_mse": 1.0})


def test_training_times_uniform_and_logit_normal() -> None:
    g = torch.Generator().manual_seed(0)
    uniform = FLOW.sample_times(20000, "cpu", g) / T
    assert 0 < uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    logit = FlowMatching(T, time_sampling="logit_normal", logit_mean=0.5, logit_std=1.0).sample_times(20000, "cpu", g)
    z = torch.logit(logit / T)
    assert abs(z.mean() - 0.5) < 0.03 and abs(z.std() - 1.0) < 0.03  # logit(t) ~ N(m, s^2)


def test_the_vp_view_of_the_straight_path() -> None:
    schedule = FLOW.schedule()
    for t in (0.001, 0.3, 0.5, 0.999):
        p = schedule.point(t)
        assert p.alpha**2 + p.sigma**2 == pytest.approx(1.0) and p.sigma_ve == pytest.approx(t / (1 - t))
        assert p.lam == pytest.approx(math.log((1 - t) / t)) and float(schedule.lambda_(t)) == pytest.approx(p.lam)
        x0, eps = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
        x_flow = (1 - t) * x0 + t * eps
        x_in, t_in = FLOW.network_input(x_flow / math.hypot(1 - t, t), torch.full((2,), t), p)
        torch.testing.assert_close(x_in, x_flow)
        torch.testing.assert_close(t_in, torch.full((2,), t * T))
        back_x0, back_eps = FLOW.denoised(eps - x0, x_in, p)  # the true velocity gives back x0 and eps
        torch.testing.assert_close(back_x0, x0)
        torch.testing.assert_close(back_eps, eps)


@pytest.mark.parametrize("spacing", ["uniform", "logsnr", "karras"])
def test_grids_run_from_t_max_to_t_min_and_the_shift_moves_them_to_the_noise(spacing: str) -> None:
    t = FlowSchedule(T).grid_times(10, spacing)
    assert t[0] == pytest.approx(1 - 1 / T) and t[-1] == pytest.approx(1 / T) and bool((t[1:] < t[:-1]).all())
    if spacing == "uniform":
        torch.testing.assert_close(t, torch.linspace(1 - 1 / T, 1 / T, 10, dtype=torch.float64))
    if spacing == "logsnr":
        lam = FlowSchedule(T).lambda_(t)
        torch.testing.assert_close(lam[1:] - lam[:-1], torch.full((9,), float(lam[1] - lam[0]), dtype=torch.float64))
    moved = FlowSchedule(T, shift=3.0).grid_times(10, spacing)
    torch.testing.assert_close(moved, shifted(t, 3.0))
    assert bool((moved[1:-1] > t[1:-1]).all())
    assert len(grid_points(FlowSchedule(T), 10, spacing)) == 11  # then the clean endpoint


@pytest.mark.parametrize("name", list(SOLVER_ORDERS))
def test_each_solver_converges_at_its_order_on_the_gaussian_toy(name: str) -> None:
    t0 = 1 - 1 / T
    start = x_T(t0)
    # The multistep solvers' orders are their papers' analysis in lambda: on the log-SNR grid. From sigma / alpha =
    # 999 the error is asymptotic from about 32 steps.
    spacing = "logsnr" if name in ("dpmpp_2m", "unipc") else "uniform"
    assert_solver_order(name, FLOW, exact_velocity, start, exact_x0(start, t0), spacing)


def test_flow_euler_matches_diffusers_flow_match_euler() -> None:
    diffusers = pytest.importorskip("diffusers")
    g = torch.Generator().manual_seed(1)
    w = 0.3 * torch.randn(1, 1, 3, 3, generator=g)

    def net(x: Tensor, t_net: Tensor) -> Tensor:  # a toy velocity field with a float-t dependence
        return exact_velocity(x, t_net) + 0.2 * torch.tanh(torch.nn.functional.conv2d(x, w, padding=1)) * torch.cos(
            t_net.view(-1, 1, 1, 1) / 300)

    for steps, shift in ((5, 1.0), (10, 1.0), (20, 1.0), (10, 3.0)):
        times = FlowSchedule(T).grid_times(steps, "uniform")  # unshifted: diffusers shifts them itself
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)
        scheduler.set_timesteps(sigmas=times.float().tolist())
        noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(steps))
        x = noise.clone()
        for t in scheduler.timesteps:
            x = scheduler.step(net(x, t.expand(2)), t, x).prev_sample
        first = float(scheduler.sigmas[0])
        ours = run_sampler("euler", FlowMatching(T, shift=shift), net, noise / math.hypot(1 - first, first),
                           steps=steps, spacing="uniform", clip=False)
        assert (ours - x).abs().max() < 1e-5, (steps, shift, float((ours - x).abs().max()))
    assert sampler_entry("euler").nfe(10) == len(scheduler.timesteps)  # the same network calls


def test_euler_inversion_and_decoding_mirror_each_other() -> None:
    from genlab.diffusion import Denoiser, euler_invert, euler_sample

    denoiser = Denoiser(exact_velocity, FLOW)
    x0 = 0.5 * torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    errors = []
    for steps in (16, 64, 256):
        x_T = euler_invert(denoiser, x0, steps=steps, spacing="uniform")
        back = euler_sample(denoiser, x_T, steps=steps, spacing="uniform")
        errors.append(float((back - x0).abs().max()))
    # First order: each fourfold of the steps cuts the round trip's error about fourfold (0.28, 0.071, 0.018).
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3, errors


def toy_velocity(x: Tensor, t_net: Tensor) -> Tensor:
    """The Gaussian toy's velocity plus a nonlinear, time-dependent term: no solver is exact on it."""
    w = 0.3 * torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    bend = torch.tanh(torch.nn.functional.conv2d(x, w, padding=1)) * torch.cos(t_net.view(-1, 1, 1, 1) / 300)
    return exact_velocity(x, t_net) + 0.2 * bend


def flow_matching_velocity(fm_wrapper: type, shape: tuple[int, ...] | None = None) -> object:
    """The toy as facebookresearch/flow_matching's solvers take it: their t runs from noise (0) to data (1), so their
    velocity is minus genlab's at t' = 1 - t. `shape`: the image shape of flattened inputs (their exact divergence
    takes [B, D] samples)."""

    class Velocity(fm_wrapper):
        def __init__(self) -> None:
            super().__init__(torch.nn.Identity())

        def forward(self, x: Tensor, t: Tensor, **extras: object) -> Tensor:
            images = x if shape is None else x.view(-1, *shape)
            u = -toy_velocity(images, ((1 - t) * T).expand(x.shape[0]))
            return u if shape is None else u.flatten(1)

    return Velocity()


def test_flow_euler_matches_the_flow_matching_packages_ode_solver() -> None:
    fm_solver = pytest.importorskip("flow_matching.solver")
    from flow_matching.utils import ModelWrapper

    solver = fm_solver.ODESolver(velocity_model=flow_matching_velocity(ModelWrapper))
    for steps in (5, 10, 20):
        times = FlowSchedule(T).grid_times(steps, "uniform")  # 1 - 1/T .. 1/T, then the data at 0
        grid = 1 - torch.cat([times, torch.zeros(1, dtype=times.dtype)]).float()
        noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(steps))
        theirs = solver.sample(noise, step_size=None, method="euler", time_grid=grid)
        first = float(times[0])
        ours = run_sampler("euler", FLOW, toy_velocity, noise / math.hypot(1 - first, first), steps=steps,
                           spacing="uniform", clip=False)
        assert (ours - theirs).abs().max() < 1e-5, (steps, float((ours - theirs).abs().max()))


def test_the_ode_likelihood_matches_the_flow_matching_packages() -> None:
    """genlab's log p (Heun in log sigma/alpha, 200 steps) against flow_matching's compute_likelihood (midpoint, 400
    steps in t, exact divergence) on the same network: the two discretisations meet within 2e-3 nats."""
    fm_solver = pytest.importorskip("flow_matching.solver")
    from flow_matching.utils import ModelWrapper

    from genlab.diffusion import Denoiser
    from genlab.diffusion.ode_likelihood import denoiser_eps, nll_points, ode_log_likelihood

    x = DATA_STD * torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    solver = fm_solver.ODESolver(velocity_model=flow_matching_velocity(ModelWrapper, (1, 4, 4)))
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    _, theirs = solver.compute_likelihood(x.flatten(1), lambda z: normal.log_prob(z).flatten(1).sum(1), step_size=None,
                                          method="midpoint", time_grid=torch.linspace(1, 0, 401, dtype=torch.float64),
                                          exact_divergence=True)
    denoiser = Denoiser(toy_velocity, FLOW)
    ours = ode_log_likelihood(denoiser_eps(denoiser), x, nll_points(denoiser, 200), exact=True)
    assert (ours - theirs).abs().max() < 2e-3, (ours, theirs)
