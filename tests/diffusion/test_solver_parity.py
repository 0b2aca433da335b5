"""Full sampling loops against diffusers 0.36 schedulers: same betas (linear, T = 1000, 1e-4..0.02), same x_T, same
grid, a seeded tiny conv eps-network with a float-t dependence; final samples agree within TOL in float32.

The grid is shared explicitly. genlab builds it in float64 from its betas; each test writes those times and VE sigmas
into the diffusers scheduler after `set_timesteps` (for DPM-Solver++ on the integer "uniform" grid, through the public
`set_timesteps(timesteps=...)`). diffusers' own tables are float32, and in float32 1 - abar_0 = 1e-4 keeps only a few
digits, so its sigma_min is 8e-5 (relative) off and its Karras grid moves with it: that alone changes a 5-step Heun
sample by 7e-5. `test_diffusers_own_karras_grid_is_genlabs` checks diffusers' native grids separately.

Every parity test also runs genlab with one coefficient 1% off and shows that the difference then exceeds TOL, so the
tolerance can tell a right step from a wrong one.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

diffusers = pytest.importorskip("diffusers")

from genlab.diffusion import (  # noqa: E402 (after the importorskip)
    GaussianDiffusion,
    GridPoint,
    VPSchedule,
    cosine_betas,
    grid_points,
    linear_betas,
    run_sampler,
    sampler_entry,
)
from genlab.diffusion import solver_steps, solvers  # noqa: E402

T = 1000
TOL = 1e-4
STEPS = [5, 10, 20]
SHAPE = (2, 1, 8, 8)
DIFFUSION = GaussianDiffusion(linear_betas(T))
SCHEDULE = VPSchedule.from_diffusion(DIFFUSION)
CONFIG = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", prediction_type="epsilon")


class TinyEps(nn.Module):
    """A random two-layer conv eps-network with a sinusoidal float-t input, around the eps of Gaussian data.

    The Gaussian part (x0 ~ N(0, 0.25 I)) keeps the data prediction O(1) at every noise level, so float32 agreement
    is measured on O(1) numbers; the random part, scaled by alpha_t, makes every pixel's trajectory different.
    """

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(0.5 * torch.randn(8, 1, 3, 3, generator=g))
        self.w2 = nn.Parameter(0.3 * torch.randn(1, 8, 3, 3, generator=g))
        self.phase = nn.Parameter(6.28 * torch.rand(8, generator=g))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.to(torch.float32)  # as the U-Net's time embedding does
        abar = SCHEDULE.alpha_bar(t.double()).float().view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        gaussian = (1 - abar).sqrt() * x / (0.25 * abar + 1 - abar)
        time_features = torch.sin(3 * t.view(-1, 1, 1, 1) / T + self.phase.view(1, -1, 1, 1))  # [B, 8, 1, 1]
        h = F.silu(F.conv2d(x, self.w1, padding=1) + time_features)
        return gaussian + 0.3 * abar.sqrt() * torch.tanh(F.conv2d(h, self.w2, padding=1))


MODEL = TinyEps().eval().requires_grad_(False)

# The v-prediction cases: the cosine schedule (Nichol & Dhariwal), where alpha_{999} = 4.9e-5, so a sampler that
# turns v into eps and back divides by alpha and loses the v part in float32. diffusers gets genlab's betas as they
# are (trained_betas), so both run on one schedule.
DIFFUSION_V = GaussianDiffusion(cosine_betas(T), prediction="v")
SCHEDULE_V = VPSchedule.from_diffusion(DIFFUSION_V)
CONFIG_V = dict(num_train_timesteps=T, trained_betas=DIFFUSION_V.betas.numpy(), prediction_type="v_prediction")


class TinyV(TinyEps):
    """A v-network of the same kind: the ideal v of Gaussian data x0 ~ N(0, 0.25 I),
    v* = alpha sigma (1 - s^2) x / (alpha^2 s^2 + sigma^2), plus a random conv part; O(1) at every noise level."""

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.to(torch.float32)
        abar = SCHEDULE_V.alpha_bar(t.double()).float().view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        gaussian = alpha * sigma * 0.75 * x / (0.25 * abar + 1 - abar)
        time_features = torch.sin(3 * t.view(-1, 1, 1, 1) / T + self.phase.view(1, -1, 1, 1))  # [B, 8, 1, 1]
        h = F.silu(F.conv2d(x, self.w1, padding=1) + time_features)
        return gaussian + 0.3 * torch.tanh(F.conv2d(h, self.w2, padding=1))


MODEL_V = TinyV().eval().requires_grad_(False)


def x_T() -> Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))


def share_grid(scheduler, steps: int, spacing: str, heun: bool = False,  # noqa: ANN001
               schedule: VPSchedule = SCHEDULE) -> None:
    """Overwrite the scheduler's timesteps and sigmas with genlab's grid (Heun's repeat each interior point)."""
    points = grid_points(schedule, steps, spacing)
    scheduler.set_timesteps(steps)
    t = torch.tensor([p.t for p in points[:-1]], dtype=torch.float32)
    sigmas = torch.tensor([p.sigma_ve for p in points], dtype=torch.float32)  # ends with CLEAN's sigma = 0
    if heun:  # diffusers' layout: [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0] and [t0, t1, t1, ..., t_{N-1}, t_{N-1}]
        sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
        t = torch.cat([t[:1], t[1:].repeat_interleave(2)])
    scheduler.timesteps, scheduler.sigmas = t, sigmas


@torch.no_grad()
def diffusers_loop(scheduler, x: Tensor, ve: bool, model: nn.Module = MODEL) -> tuple[Tensor, int]:  # noqa: ANN001
    """The pipeline loop: (scaled) input, the network's output, step. With `ve`, x is diffusers' VE sample x / alpha.

    Returns the final sample and the number of network calls.
    """
    if ve:  # genlab's VP x_T is the VE sample x_T / alpha_{T-1} = x_T sqrt(1 + sigma_max^2), not x_T * sigma_max
        x = x * (1 + scheduler.sigmas[0].double() ** 2).sqrt().float()
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t) if ve else x  # x / sqrt(sigma^2 + 1): the VP sample
        x = scheduler.step(model(model_in, t.expand(SHAPE[0])), t, x).prev_sample
    return x, len(scheduler.timesteps)


def dpmpp_reference(steps: int, spacing: str) -> tuple[Tensor, int]:
    scheduler = diffusers.DPMSolverMultistepScheduler(
        algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True, **CONFIG
    )
    if spacing == "uniform":
        scheduler.set_timesteps(timesteps=[int(p.t) for p in grid_points(SCHEDULE, steps, spacing)[:-1]])
    else:
        share_grid(scheduler, steps, spacing)
    return diffusers_loop(scheduler, x_T(), ve=False)


def unipc_reference(steps: int, spacing: str) -> tuple[Tensor, int]:
    scheduler = diffusers.UniPCMultistepScheduler(solver_type="bh2", **CONFIG)  # predict_x0=True, solver_order=2
    share_grid(scheduler, steps, spacing)
    return diffusers_loop(scheduler, x_T(), ve=False)


def karras_reference(name: str, steps: int) -> tuple[Tensor, int]:
    cls = diffusers.HeunDiscreteScheduler if name == "heun" else diffusers.EulerDiscreteScheduler
    scheduler = cls(use_karras_sigmas=True, **CONFIG)
    share_grid(scheduler, steps, "karras", heun=name == "heun")
    return diffusers_loop(scheduler, x_T(), ve=True)


def reference(name: str, steps: int, spacing: str) -> tuple[Tensor, int]:
    if name == "dpmpp_2m":
        return dpmpp_reference(steps, spacing)
    if name == "unipc":
        return unipc_reference(steps, spacing)
    return karras_reference(name, steps)


def genlab(name: str, steps: int, spacing: str, diffusion: GaussianDiffusion = DIFFUSION,
           model: nn.Module = MODEL) -> Tensor:
    """genlab's solver through its registry entry, unclipped, with the network's own target (diffusion.prediction)."""
    return run_sampler(name, diffusion, model, x_T(), steps=steps, spacing=spacing, clip=False)


def solver_nfe(name: str, steps: int) -> int:
    return sampler_entry(name).nfe(steps)


def scaled(fn: Callable, index: int, factor: float = 1.01) -> Callable:
    """A coefficient function with its `index`-th coefficient multiplied by `factor`."""

    def wrong(*args: object) -> tuple[float, ...]:
        coefs = list(fn(*args))
        coefs[index] *= factor
        return tuple(coefs)

    return wrong


def wrong_heun_step(x_euler: Tensor, d: Tensor, d_next: Tensor, cur: GridPoint, nxt: GridPoint) -> Tensor:
    return x_euler + (0.505 * (nxt.sigma - nxt.alpha * cur.sigma_ve)) * (d_next - d)  # the trapezoid's weight 1% off


def wrong_euler_step(denoised: Tensor, d: Tensor, nxt: GridPoint) -> Tensor:
    return nxt.alpha * denoised + 1.01 * nxt.sigma * d  # the step in sigma 1% off


# (solver, grid, where the wrong coefficient goes): one coefficient per solver, in its distinctive term.
CASES = [
    ("dpmpp_2m", "uniform", (solver_steps, "dpmpp_2m_coefficients", 2)),  # the 2M term on D_prev
    ("dpmpp_2m", "logsnr", (solver_steps, "dpmpp_2m_coefficients", 2)),
    ("unipc", "uniform", (solver_steps, "unipc_corrector_coefficients", 2)),  # UniC's weight on the new evaluation
    ("unipc", "logsnr", (solver_steps, "unipc_corrector_coefficients", 2)),
    ("heun", "karras", (solvers, "heun_step", wrong_heun_step)),
    ("euler", "karras", (solvers, "euler_step", wrong_euler_step)),
]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name,spacing,wrong", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_full_loop_matches_diffusers_and_a_wrong_coefficient_does_not(
    name: str, spacing: str, wrong: tuple, steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, calls = reference(name, steps, spacing)
    assert calls == solver_nfe(name, steps)  # diffusers makes as many network calls as genlab counts
    error = (genlab(name, steps, spacing) - expected).abs().max().item()
    assert error < TOL, f"{name} {spacing} {steps} steps: max-abs {error:.2e}"

    module, attr, replacement = wrong
    if isinstance(replacement, int):
        replacement = scaled(getattr(module, attr), replacement)
    monkeypatch.setattr(module, attr, replacement)
    wrong_error = (genlab(name, steps, spacing) - expected).abs().max().item()
    assert wrong_error > 3 * TOL, f"{name} with a 1% wrong coefficient still within {wrong_error:.2e}"


def test_the_unipc_corrector_is_what_diffusers_runs() -> None:
    # With UniC off (diffusers' disable_corrector for every step), diffusers is DPM-Solver++(2M): so the UniPC parity
    # above is about the corrector, not only the shared predictor.
    scheduler = diffusers.UniPCMultistepScheduler(solver_type="bh2", disable_corrector=list(range(10)), **CONFIG)
    share_grid(scheduler, 10, "logsnr")
    no_corrector, _ = diffusers_loop(scheduler, x_T(), ve=False)
    assert (no_corrector - genlab("dpmpp_2m", 10, "logsnr")).abs().max() < TOL
    assert (no_corrector - genlab("unipc", 10, "logsnr")).abs().max() > 10 * TOL


@pytest.mark.parametrize("name", ["heun", "euler"])
def test_diffusers_own_karras_grid_is_genlabs(name: str) -> None:
    cls = diffusers.HeunDiscreteScheduler if name == "heun" else diffusers.EulerDiscreteScheduler
    for steps in STEPS:
        scheduler = cls(use_karras_sigmas=True, **CONFIG)
        scheduler.set_timesteps(steps)
        points = grid_points(SCHEDULE, steps, "karras")
        sigmas = scheduler.sigmas.unique_consecutive().double()
        ours = torch.tensor([p.sigma_ve for p in points], dtype=torch.float64)
        # Within diffusers' float32 table: sigma_min = sqrt((1 - abar_0) / abar_0) is 8e-5 off in float32.
        torch.testing.assert_close(sigmas, ours, rtol=1e-4, atol=0)
        t = torch.tensor([p.t for p in points[:-1]], dtype=torch.float64)
        torch.testing.assert_close(scheduler.timesteps.unique_consecutive().double(), t, rtol=0, atol=0.01)
        if steps >= 10:  # the native loop agrees too, once the steps are small enough for sigma_min not to matter
            native, _ = diffusers_loop(scheduler, x_T(), ve=True)
            assert (genlab(name, steps, "karras") - native).abs().max() < TOL


def v_reference(name: str, steps: int, spacing: str) -> Tensor:
    """diffusers' DPM-Solver++(2M) or UniPC with the v-network on the cosine schedule, on genlab's grid (shared
    explicitly: diffusers' own interpolation of custom timesteps moves its sigmas by up to 7e-5 here)."""
    if name == "dpmpp_2m":
        scheduler = diffusers.DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
                                                          lower_order_final=True, **CONFIG_V)
    else:
        scheduler = diffusers.UniPCMultistepScheduler(solver_type="bh2", **CONFIG_V)
    share_grid(scheduler, steps, spacing, schedule=SCHEDULE_V)
    return diffusers_loop(scheduler, x_T(), ve=False, model=MODEL_V)[0]


V_TOL = 1e-5  # the goal: a v-network's x0 = alpha x - sigma v taken directly, as diffusers does


def v_as_eps(x: Tensor, t: Tensor) -> Tensor:
    """The v-network turned into eps = sigma x + alpha v, the detour the solvers used to take."""
    abar = SCHEDULE_V.alpha_bar(t.double()).float().view(-1, 1, 1, 1)  # [B] -> [B, 1, 1, 1]
    return (1 - abar).sqrt() * x + abar.sqrt() * MODEL_V(x, t)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("spacing", ["uniform", "logsnr"])
@pytest.mark.parametrize("name", ["dpmpp_2m", "unipc"])
def test_a_v_network_on_the_cosine_schedule_matches_diffusers(name: str, spacing: str, steps: int) -> None:
    ours = genlab(name, steps, spacing, DIFFUSION_V, MODEL_V)
    error = (ours - v_reference(name, steps, spacing)).abs().max().item()
    assert error < V_TOL, f"{name} {spacing} {steps} steps, v on cosine: max-abs {error:.2e}"
    model64 = TinyV().double().eval().requires_grad_(False)  # the same weights, in float64: the exact answer
    exact = run_sampler(name, DIFFUSION_V, model64, x_T().double(), steps=steps, spacing=spacing, clip=False)
    assert (ours.double() - exact).abs().max().item() < V_TOL
    if spacing == "uniform":  # its first evaluation sits at t = 999, alpha = 4.9e-5: the eps detour loses the v part
        detour = run_sampler(name, DIFFUSION_V, v_as_eps, x_T(), prediction="eps", steps=steps, spacing=spacing,
                             clip=False)
        assert (detour.double() - exact).abs().max().item() > 4 * V_TOL
