"""Fast deterministic samplers (probability-flow ODE solvers): loops that call a Denoiser; the math is in
solver_steps.py and the grids in time_grids.py.

Each loop takes a Denoiser (denoiser.py), x_T and its grid settings, and asks the denoiser at every grid point for the
data prediction x0 and eps, computed from the network's output in its own target. The network sees VP x_t and the
grid time: a LongTensor [B] when every grid time is an integer ("uniform"), else a float32 tensor [B] (the U-Net's
time embedding takes fractional t). Classifier guidance enters through the denoiser (eps_hat = eps - sigma_t grad,
Dhariwal & Nichol eq. 14), classifier-free guidance through its network. `clip` clamps the data prediction x0 to
[-1, 1] (off by default: it makes an ODE solver inexact). `rho` and `sigma_max` shape a Karras or log-SNR grid
(time_grids.py; None: the process's own). The registry (sampler_registry.py) holds each solver's default steps and
grid.

Default grids: Karras et al. 2022 for heun and euler (eq. 5, rho = 7, their Table 1);
uniform t for dpmpp_2m and unipc, as diffusers' schedulers default to. The DPM-Solver papers recommend the log-SNR
grid for low-resolution pixel-space models; on genlab's 20-minute MNIST DDPM (linear betas) it measured worse at 5
NFE (domain FID 13.7 against 6.6 on uniform t for DPM-Solver++, 13.5 against 6.3 for UniPC; three seeds), worse at
10 and level at 20 (experiments/results/mnist20/nfe_sweep.md), so `spacing=logsnr` is there to choose, not the
default.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.progress import steps_bar
from genlab.diffusion.solver_steps import (
    dpmpp_2m_step,
    euler_step,
    heun_step,
    unipc_corrector_step,
    unipc_predictor_step,
)
from genlab.diffusion.time_grids import GridPoint, grid_points

class _OnGrid:
    """A Denoiser seen from the points of one grid: the data prediction x0 and dx~/dsigma, clamped if asked."""

    def __init__(self, denoiser: Denoiser, points: list[GridPoint], clip: bool) -> None:
        self.denoiser, self.clip = denoiser, clip
        # One dtype for the whole run: integers where the grid allows, so "uniform" calls the model as DDIM does.
        self.integral = all(p.t == int(p.t) for p in points)

    def time(self, x: Tensor, p: GridPoint) -> Tensor:
        """p's time as a [B] tensor: a LongTensor on an integer grid, else float32 (the U-Net embeds fractional t)."""
        if self.integral and p.t == int(p.t):  # (a stochastic Heun's raised noise level sits between the points)
            return torch.full((x.shape[0],), int(p.t), dtype=torch.long, device=x.device)
        return torch.full((x.shape[0],), p.t, dtype=torch.float32, device=x.device)

    def x0(self, x: Tensor, p: GridPoint) -> Tensor:
        """The data prediction at the VP sample x (guided), clamped to [-1, 1] if asked."""
        x0, _ = self.denoiser.at(x, self.time(x, p), p)
        return x0.clamp(-1.0, 1.0) if self.clip else x0

    def slope(self, x: Tensor, p: GridPoint) -> tuple[Tensor, Tensor]:
        """(D, d) at the VP sample x: the data prediction D (clamped if asked) and d x~ / d sigma =
        (x~ - D(x~; sigma)) / sigma (EDM eq. 3 with s = 1), which is eps unless D was clamped; x~ = x / alpha."""
        x0, eps = self.denoiser.at(x, self.time(x, p), p)
        if not self.clip:
            return x0, eps
        clamped = x0.clamp(-1.0, 1.0)
        return clamped, eps + (x0 - clamped) / p.sigma_ve  # x~ - D = (x0 + sigma eps) - D


@torch.no_grad()
def dpmpp_2m_sample(
    denoiser: Denoiser,
    x_T: Tensor,
    *,
    steps: int,
    spacing: str,
    rho: float | None = None,
    sigma_max: float | None = None,
    clip: bool = False,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) over `steps` grid points: `steps` network evaluations.

    First order on the first step (Algorithm 2's warm-up) and on the last, to sigma = 0 where h is infinite
    (diffusers' lower_order_final with final_sigmas_type="zero"); second order in between.
    """
    points, x = grid_points(denoiser.schedule, steps, spacing, rho, sigma_max), x_T
    den = _OnGrid(denoiser, points, clip)
    d_prev = None
    for i in steps_bar(range(steps), "DPM-Solver++(2M)", progress):
        d = den.x0(x, points[i])
        second_order = d_prev is not None and points[i + 1].sigma > 0
        x = dpmpp_2m_step(x, d, d_prev if second_order else None, points[i - 1], points[i], points[i + 1])
        d_prev = d
    return x


@torch.no_grad()
def unipc_sample(
    denoiser: Denoiser,
    x_T: Tensor,
    *,
    steps: int,
    spacing: str,
    rho: float | None = None,
    sigma_max: float | None = None,
    clip: bool = False,
    progress: bool = False,
) -> Tensor:
    """UniPC with UniP-2 and UniC, B(h) = e^h - 1, data prediction (Zhao et al. 2023): `steps` evaluations.

    At each grid point after the first, the evaluation at the predicted sample first corrects it (UniC-p, p the
    order of the predictor that produced it), then feeds the next predictor. Predictor orders: 1 on the first step
    (warm-up), 2 in between, 1 on the last (to sigma = 0), as diffusers' lower_order_final does. After the last
    predictor nothing is evaluated, so nothing is corrected: the result is UniP-1 from the last grid point.
    """
    points, x = grid_points(denoiser.schedule, steps, spacing, rho, sigma_max), x_T
    den = _OnGrid(denoiser, points, clip)
    m_prev = m_older = x_base = None
    order_prev = 0
    for i in steps_bar(range(steps), "UniPC", progress):
        m = den.x0(x, points[i])
        if i > 0:  # UniC: x_i is the predictor's output from x_base at point i-1
            older = m_older if order_prev == 2 else None
            x = unipc_corrector_step(x_base, m_prev, m, older, points[i - 2], points[i - 1], points[i])
        order = 1 if i == 0 or i == steps - 1 else 2
        x_base = x
        x = unipc_predictor_step(x, m, m_prev if order == 2 else None, points[i - 1], points[i], points[i + 1])
        m_older, m_prev, order_prev = m_prev, m, order
    return x


@torch.no_grad()
def euler_sample(
    denoiser: Denoiser,
    x_T: Tensor,
    *,
    steps: int,
    spacing: str,
    rho: float | None = None,
    sigma_max: float | None = None,
    clip: bool = False,
    progress: bool = False,
) -> Tensor:
    """Euler's method in sigma (Karras et al. 2022, Algorithm 1 without its correction): `steps` evaluations,
    written on the VP sample (solver_steps.euler_step); at sigma = 0 the VP sample is the data prediction."""
    points, x = grid_points(denoiser.schedule, steps, spacing, rho, sigma_max), x_T
    den = _OnGrid(denoiser, points, clip)
    for i in steps_bar(range(steps), "Euler", progress):
        x = euler_step(*den.slope(x, points[i]), points[i + 1])
    return x


@torch.no_grad()
def heun_sample(
    denoiser: Denoiser,
    x_T: Tensor,
    *,
    steps: int,
    spacing: str,
    rho: float | None = None,
    sigma_max: float | None = None,
    clip: bool = False,
    progress: bool = False,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 1) over `steps` sigma intervals: 2 steps - 1 evals;
    with s_churn > 0 their stochastic sampler (Algorithm 2).

    Algorithm 2 first raises the noise of each point with sigma in [s_tmin, s_tmax] to sigma_hat = (1 + gamma) sigma,
    gamma = min(s_churn / steps, sqrt(2) - 1), by adding N(0, (sigma_hat^2 - sigma^2) s_noise^2) to x~ (lines 4-6),
    then takes the Heun step from sigma_hat. The last interval ends at sigma = 0, where Algorithm 1 (line 7) keeps the
    Euler step. Written on the VP sample (solver_steps.heun_step); all noise comes from `generator`.
    """
    points, x = grid_points(denoiser.schedule, steps, spacing, rho, sigma_max), x_T
    den = _OnGrid(denoiser, points, clip)
    for i in steps_bar(range(steps), "Heun", progress):
        cur, nxt = points[i], points[i + 1]
        gamma = min(s_churn / steps, math.sqrt(2.0) - 1.0) if s_tmin <= cur.sigma_ve <= s_tmax else 0.0
        if gamma > 0:  # Algorithm 2, lines 4-6, on the VP sample: x_hat = alpha_hat (x / alpha + noise)
            hat = denoiser.schedule.point_of_sigma(cur.sigma_ve * (1.0 + gamma))
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = hat.alpha * (x / cur.alpha + math.sqrt(hat.sigma_ve**2 - cur.sigma_ve**2) * s_noise * noise)
            cur = hat
        denoised, d = den.slope(x, cur)
        x_euler = euler_step(denoised, d, nxt)
        x = x_euler if nxt.sigma == 0.0 else heun_step(x_euler, d, den.slope(x_euler, nxt)[1], cur, nxt)
    return x


@torch.no_grad()
def euler_invert(
    denoiser: Denoiser,
    x0: Tensor,
    *,
    steps: int,
    spacing: str,
    rho: float | None = None,
    sigma_max: float | None = None,
    progress: bool = False,
) -> Tensor:
    """Encode clean images x0 into the latent that euler_sample (same steps and grid) decodes back into them: its
    steps read upwards, DDIM inversion on any process (Song et al. 2021, sec. 4.3).

    From the clean image to the grid's lowest point, then up the grid to its first: x' = alpha' x0_hat + sigma' eps,
    with (x0_hat, eps) taken at the current point (the future one is unknown). At the clean image x0_hat = x0 and eps
    is taken at the lowest grid point, as DDIM inversion evaluates t = 0. Never clipped: clipping is not invertible.
    """
    points = grid_points(denoiser.schedule, steps, spacing, rho, sigma_max)[:-1][::-1]  # increasing noise; no clean endpoint
    den = _OnGrid(denoiser, points, clip=False)
    x = x0
    for i in steps_bar(range(steps), "ODE inversion", progress):
        cur, nxt = points[max(i - 1, 0)], points[i]
        x0_hat, eps = den.denoiser.at(x, den.time(x, cur), cur)
        if i == 0:
            x0_hat = x  # the clean image itself
        x = nxt.alpha * x0_hat + nxt.sigma * eps
    return x
