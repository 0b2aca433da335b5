"""Fast deterministic samplers (probability-flow ODE solvers): loops that call the network; the math is in
solver_steps.py and the grids in time_grids.py.

The loops share `ddim_sample`'s keyword interface. They call `model_fn(x_t, t, **model_kwargs) -> eps` with VP x_t and
t the grid time: a LongTensor [B] when every grid time is an integer ("uniform"), else a float32 tensor [B] (the
U-Net's time embedding takes fractional t). Classifier guidance replaces eps by
eps_hat = eps - sqrt(1 - abar_t) cond_fn(x_t, t) (Dhariwal & Nichol eq. 14) before eps becomes x0 or dx/dsigma, as
in DDIM; classifier-free guidance is a model_fn wrapper (guidance.py) and needs nothing here. `clip_denoised` clamps
the data prediction x0 to [-1, 1] (off by default: it makes an ODE solver inexact).

Default grids (`SOLVER_DEFAULT_SPACING`): Karras et al. 2022 for heun and euler (eq. 5, rho = 7, their Table 1);
uniform t for dpmpp_2m and unipc, as diffusers' schedulers default to. The DPM-Solver papers recommend the log-SNR
grid for low-resolution pixel-space models; on genlab's MNIST DDPM (linear betas) it measured worse at 5 NFE (domain
FID 15.8 against 9.3 on uniform t for DPM-Solver++, 16.0 against 9.1 for UniPC) and no better from 10 NFE up
(experiments/results/mnist/nfe_sweep.md), so `spacing=logsnr` is there to choose, not the default.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from genlab.diffusion.classifier_guidance import CondFn, guided_eps
from genlab.diffusion.gaussian import GaussianDiffusion, ModelFn
from genlab.diffusion.progress import steps_bar
from genlab.diffusion.samplers import _initial_noise
from genlab.diffusion.solver_steps import (
    dpmpp_2m_step,
    euler_step,
    heun_step,
    unipc_corrector_step,
    unipc_predictor_step,
)
from genlab.diffusion.time_grids import GridPoint, VPSchedule, grid_points

SOLVER_DEFAULT_SPACING: dict[str, str] = {"dpmpp_2m": "uniform", "unipc": "uniform", "heun": "karras", "euler": "karras"}


class _Denoiser:
    """The network seen from one grid point: guided eps, the data prediction x0, and dx~/dsigma."""

    def __init__(
        self,
        model_fn: ModelFn,
        model_kwargs: dict | None,
        cond_fn: CondFn | None,
        clip_denoised: bool,
        points: list[GridPoint],
    ) -> None:
        self.model_fn, self.model_kwargs = model_fn, model_kwargs or {}
        self.cond_fn, self.clip_denoised = cond_fn, clip_denoised
        # One dtype for the whole run: integers where the grid allows, so "uniform" calls the model as DDIM does.
        self.integral = all(p.t == int(p.t) for p in points)

    def eps(self, x: Tensor, p: GridPoint) -> Tensor:
        """Guided eps at VP sample x and grid point p."""
        if self.integral:
            t = torch.full((x.shape[0],), int(p.t), dtype=torch.long, device=x.device)
        else:
            t = torch.full((x.shape[0],), p.t, dtype=torch.float32, device=x.device)
        eps = self.model_fn(x, t, **self.model_kwargs)
        if self.cond_fn is not None:  # a float64 0-dim abar keeps 1 - abar exact; the result stays in x's dtype
            eps = guided_eps(eps, torch.tensor(p.alpha_bar, dtype=torch.float64, device=x.device), self.cond_fn(x, t))
        return eps

    def x0(self, x: Tensor, p: GridPoint) -> Tensor:
        """Data prediction x0 = (x_t - sigma_t eps) / alpha_t (DDPM eq. 4 solved for x0), clamped if asked."""
        x0 = (x - p.sigma * self.eps(x, p)) / p.alpha
        return x0.clamp(-1.0, 1.0) if self.clip_denoised else x0

    def dxdsigma(self, x_ve: Tensor, p: GridPoint) -> Tensor:
        """d x~ / d sigma = (x~ - D(x~; sigma)) / sigma (EDM eq. 3 with s = 1), which is eps; x~ = x / alpha."""
        eps = self.eps(p.alpha * x_ve, p)  # the network sees the VP sample alpha x~ (diffusers' scale_model_input)
        if not self.clip_denoised:
            return eps
        denoised = (x_ve - p.sigma_ve * eps).clamp(-1.0, 1.0)  # D = x~ - sigma eps
        return (x_ve - denoised) / p.sigma_ve


def _setup(
    name: str,
    diffusion: GaussianDiffusion,
    shape: tuple[int, ...],
    steps: int,
    spacing: str | None,
    x_T: Tensor | None,
    generator: torch.Generator | None,
) -> tuple[list[GridPoint], Tensor]:
    points = grid_points(VPSchedule.from_diffusion(diffusion), steps, spacing or SOLVER_DEFAULT_SPACING[name])
    return points, _initial_noise(diffusion, shape, x_T, generator)


@torch.no_grad()
def dpmpp_2m_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    steps: int,
    spacing: str | None = None,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = False,
    model_kwargs: dict | None = None,
    cond_fn: CondFn | None = None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) over `steps` grid points: `steps` network evaluations.

    First order on the first step (Algorithm 2's warm-up) and on the last, to sigma = 0 where h is infinite
    (diffusers' lower_order_final with final_sigmas_type="zero"); second order in between.
    """
    points, x = _setup("dpmpp_2m", diffusion, shape, steps, spacing, x_T, generator)
    den = _Denoiser(model_fn, model_kwargs, cond_fn, clip_denoised, points)
    d_prev = None
    for i in steps_bar(range(steps), "DPM-Solver++(2M)", progress):
        d = den.x0(x, points[i])
        second_order = d_prev is not None and points[i + 1].sigma > 0
        x = dpmpp_2m_step(x, d, d_prev if second_order else None, points[i - 1], points[i], points[i + 1])
        d_prev = d
    return x


@torch.no_grad()
def unipc_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    steps: int,
    spacing: str | None = None,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = False,
    model_kwargs: dict | None = None,
    cond_fn: CondFn | None = None,
    progress: bool = False,
) -> Tensor:
    """UniPC with UniP-2 and UniC, B(h) = e^h - 1, data prediction (Zhao et al. 2023): `steps` evaluations.

    At each grid point after the first, the evaluation at the predicted sample first corrects it (UniC-p, p the
    order of the predictor that produced it), then feeds the next predictor. Predictor orders: 1 on the first step
    (warm-up), 2 in between, 1 on the last (to sigma = 0), as diffusers' lower_order_final does. After the last
    predictor nothing is evaluated, so nothing is corrected: the result is UniP-1 from the last grid point.
    """
    points, x = _setup("unipc", diffusion, shape, steps, spacing, x_T, generator)
    den = _Denoiser(model_fn, model_kwargs, cond_fn, clip_denoised, points)
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
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    steps: int,
    spacing: str | None = None,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = False,
    model_kwargs: dict | None = None,
    cond_fn: CondFn | None = None,
    progress: bool = False,
) -> Tensor:
    """Euler's method in sigma (Karras et al. 2022, Algorithm 1 without its correction): `steps` evaluations.

    Runs on x~ = x / alpha from x~_T = x_T / alpha_{T-1}; at sigma = 0, x~ is the VP sample, which is returned.
    """
    points, x = _setup("euler", diffusion, shape, steps, spacing, x_T, generator)
    den = _Denoiser(model_fn, model_kwargs, cond_fn, clip_denoised, points)
    x = x / points[0].alpha
    for i in steps_bar(range(steps), "Euler", progress):
        x = euler_step(x, den.dxdsigma(x, points[i]), points[i].sigma_ve, points[i + 1].sigma_ve)
    return x


@torch.no_grad()
def heun_sample(
    diffusion: GaussianDiffusion,
    model_fn: ModelFn,
    shape: tuple[int, ...],
    *,
    steps: int,
    spacing: str | None = None,
    x_T: Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: bool = False,
    model_kwargs: dict | None = None,
    cond_fn: CondFn | None = None,
    progress: bool = False,
) -> Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Algorithm 1) over `steps` sigma intervals: 2 steps - 1 evals.

    The last interval ends at sigma = 0, where Algorithm 1 (line 7) keeps the Euler step. Runs on x~ = x / alpha
    and returns the sample at sigma = 0, where x~ and the VP sample coincide.
    """
    points, x = _setup("heun", diffusion, shape, steps, spacing, x_T, generator)
    den = _Denoiser(model_fn, model_kwargs, cond_fn, clip_denoised, points)
    x = x / points[0].alpha
    for i in steps_bar(range(steps), "Heun", progress):
        cur, nxt = points[i], points[i + 1]
        d = den.dxdsigma(x, cur)
        x_euler = euler_step(x, d, cur.sigma_ve, nxt.sigma_ve)
        if nxt.sigma == 0.0:
            x = x_euler
        else:
            x = heun_step(x, d, den.dxdsigma(x_euler, nxt), cur.sigma_ve, nxt.sigma_ve)
    return x


SamplerFn = Callable[..., Tensor]
SOLVERS: dict[str, SamplerFn] = {
    "dpmpp_2m": dpmpp_2m_sample,
    "unipc": unipc_sample,
    "heun": heun_sample,
    "euler": euler_sample,
}

# Network evaluations per sampling call as a function of `steps`. A classifier-free-guided evaluation (one forward
# of a 2B batch, guidance.py) counts as one NFE, as in the papers' tables; a classifier-guidance gradient is extra.
_NFE: dict[str, Callable[[int], int]] = {
    "ddpm": lambda s: s,
    "ddim": lambda s: s,
    "euler": lambda s: s,
    "dpmpp_2m": lambda s: s,
    "unipc": lambda s: s,  # the corrector reuses the next step's evaluation
    "heun": lambda s: 2 * s - 1,  # two per interval, but the last one (to sigma = 0) is an Euler step
}


def solver_nfe(name: str, steps: int) -> int:
    """Network evaluations of one sampling call of sampler `name` with `steps` steps (heun: 2 steps - 1).

    A classifier-free-guided evaluation (one forward of a 2B batch) counts as one NFE; classifier-guidance
    gradients are not counted. For heun, `steps` is the number of sigma intervals.
    """
    if name not in _NFE:
        raise ValueError(f"unknown sampler {name!r}: expected one of {', '.join(_NFE)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return _NFE[name](steps)
