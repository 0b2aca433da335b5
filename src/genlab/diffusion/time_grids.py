"""Time grids for the ODE solvers, and the VP noise schedule seen at fractional t.

A discrete VP model is trained at t = 0..T-1 with x_t = alpha_t x0 + sigma_t eps, alpha_t = sqrt(abar_t) and
sigma_t = sqrt(1 - abar_t). The solvers also need these at fractional t (a log-SNR or Karras grid rarely lands on an
integer), so `VPSchedule` interpolates one table, lambda_t = log(alpha_t / sigma_t) (half the log-SNR), piecewise
linearly in t, in the manner of dpm-solver's NoiseScheduleVP. Everything else follows from lambda:
abar = sigmoid(2 lambda), and the VE noise level of Karras et al. 2022 is sigma_ve = sigma_t / alpha_t = exp(-lambda).
Interpolating log sigma_ve is therefore the same interpolation, which is how k-diffusion and diffusers map a Karras
sigma back to a model time; at integer t every value is the table's own.

A grid is S model times t_0 = T-1 > ... > t_{S-1} (= 0 for every grid with S >= 2). Each solver then takes one last
step from t_{S-1} to the clean endpoint `CLEAN` (sigma = 0), as DDIM's (0, -1) pair does, so S grid points are S steps.

Two settings shape the grids defined by the noise level, for every process (`check_grid_shape`): `rho`, the Karras
grid's exponent (eq. 5; None: the process's own, 7 unless EDM's config says otherwise), and `sigma_max`, the noise
level sigma / alpha of the first point of a "karras" or "logsnr" grid (None: the process's top, `noise_range()[1]`).
A lower top starts from x_T ~ N(0, I) as the full grid does: at sigma / alpha = s the VP sample's signal share is
alpha = 1 / sqrt(1 + s^2), which the start ignores (0.03 at s = 30).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import Tensor

from genlab.diffusion.schedules import ddim_timesteps

if TYPE_CHECKING:
    from genlab.diffusion.gaussian import GaussianDiffusion

GridName = Literal["uniform", "logsnr", "karras"]
TIME_GRIDS: tuple[str, ...] = ("uniform", "logsnr", "karras")
KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5 and Table 1
# The grids each shape setting applies to: eq. 5's rho to the Karras grid, a top noise level to both grids that are
# defined by the noise level. The one statement of that rule for the grids, the settings and their records.
GRID_SHAPES: dict[str, tuple[str, ...]] = {"rho": ("karras",), "sigma_max": ("karras", "logsnr")}


@dataclass(frozen=True)
class GridPoint:
    """One grid time with its VP coefficients (float64 scalars); sigma = 0 marks the clean endpoint."""

    t: float  # model time; -1 for the clean endpoint, which the network never sees
    alpha: float  # sqrt(abar_t)
    sigma: float  # sqrt(1 - abar_t)

    @property
    def lam(self) -> float:
        """lambda_t = log(alpha_t / sigma_t) (DPM-Solver's notation); +inf at the clean endpoint."""
        return math.inf if self.sigma == 0.0 else math.log(self.alpha) - math.log(self.sigma)

    @property
    def sigma_ve(self) -> float:
        """Karras' sigma = sigma_t / alpha_t = sqrt((1 - abar) / abar), the noise level of x / alpha_t."""
        return self.sigma / self.alpha

    @property
    def alpha_bar(self) -> float:
        """abar_t = alpha_t^2."""
        return self.alpha * self.alpha


CLEAN = GridPoint(t=-1.0, alpha=1.0, sigma=0.0)  # abar = 1: where every solver's last step lands


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation with xp increasing; clamped to the ends; exact at the nodes."""
    hi = torch.searchsorted(xp, x.clamp(xp[0], xp[-1])).clamp(1, xp.numel() - 1)
    lo = hi - 1
    w = ((x - xp[lo]) / (xp[hi] - xp[lo])).clamp(0.0, 1.0)
    return (1.0 - w) * fp[lo] + w * fp[hi]  # this form (not fp[lo] + w * diff) returns fp exactly at w = 0 or 1


class VPSchedule:
    """alpha_t, sigma_t, lambda_t of a discrete VP model at (fractional) t in [0, T-1], from its abar table."""

    def __init__(self, alphas_cumprod: Tensor) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        if abar.ndim != 1 or abar.numel() < 2 or not bool(((abar > 0) & (abar < 1)).all()):
            raise ValueError("alphas_cumprod must be 1-D, with at least 2 values, each in (0, 1)")
        if not bool((abar[1:] < abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.num_timesteps = int(abar.numel())
        self.lambdas = 0.5 * (torch.log(abar) - torch.log1p(-abar))  # [T], strictly decreasing in t
        self._steps = torch.arange(self.num_timesteps, dtype=torch.float64)

    @classmethod
    def from_diffusion(cls, diffusion: GaussianDiffusion) -> VPSchedule:
        """The schedule of `diffusion`, with abar recomputed in float64 from its betas (as respace.py does)."""
        return cls(torch.cumprod(1.0 - diffusion.betas.double().cpu(), dim=0))

    def lambda_(self, t: Tensor | float) -> Tensor:
        """lambda_t, linear in t between integer timesteps."""
        return _interp(torch.as_tensor(t, dtype=torch.float64), self._steps, self.lambdas)

    def t_of_lambda(self, lam: Tensor | float) -> Tensor:
        """The inverse of `lambda_` (clamped to [0, T-1])."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return _interp(lam, self.lambdas.flip(0), self._steps.flip(0))

    def alpha_bar(self, t: Tensor | float) -> Tensor:
        """abar_t = alpha_t^2 = sigmoid(2 lambda_t)."""
        return torch.sigmoid(2.0 * self.lambda_(t))

    def alpha(self, t: Tensor | float) -> Tensor:
        """alpha_t = sqrt(abar_t)."""
        return self.alpha_bar(t).sqrt()

    def sigma(self, t: Tensor | float) -> Tensor:
        """sigma_t = sqrt(1 - abar_t) = sqrt(sigmoid(-2 lambda_t)), without the cancellation of 1 - abar."""
        return torch.sigmoid(-2.0 * self.lambda_(t)).sqrt()

    def sigma_ve(self, t: Tensor | float) -> Tensor:
        """Karras' sigma = sigma_t / alpha_t = exp(-lambda_t)."""
        return torch.exp(-self.lambda_(t))

    def point(self, t: float) -> GridPoint:
        """The grid point at time t."""
        return GridPoint(t=float(t), alpha=float(self.alpha(t)), sigma=float(self.sigma(t)))

    def noise_range(self) -> tuple[float, float]:
        """The lowest and highest noise level sigma / alpha of the grids: at t = 0 and t = T-1."""
        return float(self.sigma_ve(0)), float(self.sigma_ve(self.num_timesteps - 1))

    def grid_times(self, steps: int, spacing: str, rho: float | None = None,
                   sigma_max: float | None = None) -> Tensor:
        """`steps` decreasing model times from T-1 (or sigma_max's time) to 0 on the named grid (see time_grid)."""
        return _vp_time_grid(self, steps, spacing, rho, sigma_max)

    def point_of_sigma(self, sigma_ve: float) -> GridPoint:
        """The grid point whose sigma_t / alpha_t is `sigma_ve` (within [0, T-1])."""
        return self.point(float(self.t_of_lambda(-math.log(sigma_ve))))


class Schedule(Protocol):
    """What the ODE solvers need of a noise process, in its VP view: the grid point of a model time, and the grids."""

    def point(self, t: float) -> GridPoint: ...

    def grid_times(self, steps: int, spacing: str, rho: float | None = None,
                   sigma_max: float | None = None) -> Tensor: ...

    def point_of_sigma(self, sigma_ve: float) -> GridPoint: ...

    def noise_range(self) -> tuple[float, float]: ...


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = KARRAS_RHO) -> Tensor:
    """sigma_i = (sigma_max^(1/rho) + i / (N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i < N (eq. 5).

    Float64, [steps], without eq. 5's final sigma_N = 0 (the solvers add it as `CLEAN`). steps = 1 gives [sigma_max].
    """
    ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def check_grid_shape(spacing: str, rho: float | None, sigma_max: float | None,
                     noise_range: tuple[float, float]) -> None:
    """ValueError unless rho (> 0, finite) goes with the "karras" grid and sigma_max with "karras" or "logsnr", inside
    the process's noise range (sigma_min, sigma_max]: a grid's top above the trained range would ask the network
    about noise levels it never saw."""
    grids = {key: " or ".join(names) for key, names in GRID_SHAPES.items()}
    if rho is not None and (spacing not in GRID_SHAPES["rho"] or not (math.isfinite(rho) and rho > 0)):
        raise ValueError(f"rho={rho!r} needs the {grids['rho']} grid (spacing {spacing!r}) and a finite value > 0")
    if sigma_max is not None:
        low, high = noise_range
        if spacing not in GRID_SHAPES["sigma_max"] or not (low < sigma_max <= high):
            raise ValueError(f"sigma_max={sigma_max!r} needs the {grids['sigma_max']} grid (spacing {spacing!r}) "
                             f"and a value in ({low:.4g}, {high:.4g}]")


def time_grid(schedule: Schedule, steps: int, spacing: str, rho: float | None = None,
              sigma_max: float | None = None) -> Tensor:
    """`steps` decreasing model times (float64) of the schedule's own grids (a VP model's below; a flow model's in
    flow.py, an EDM model's in edm.py), shaped by rho and sigma_max where given (module docstring)."""
    return schedule.grid_times(steps, spacing, rho, sigma_max)


def _vp_time_grid(schedule: VPSchedule, steps: int, spacing: str, rho: float | None = None,
                  sigma_max: float | None = None) -> Tensor:
    """`steps` decreasing model times (float64) from T-1 to 0 on the named grid.

    "uniform": `ddim_timesteps(T, steps, "uniform")`, integers (steps = 1 gives [0], as DDIM does).
    "logsnr": uniform in lambda (so in log-SNR = 2 lambda) between t = T-1 and t = 0, mapped back to fractional t.
    "karras": eq. 5 with rho (7) between sigma_min = sigma_ve(0) and sigma_max = sigma_ve(T-1), mapped back to t by
      interpolating log sigma_ve over the table. For these two, steps = 1 gives [T-1] (torch.linspace's one point),
      and sigma_max moves their first point from T-1 to the time of that noise level.
    """
    T = schedule.num_timesteps
    if spacing not in TIME_GRIDS:
        raise ValueError(f"unknown spacing {spacing!r}: expected one of {', '.join(TIME_GRIDS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in [1, num_timesteps={T}], got {steps!r}")
    low, high = schedule.noise_range()
    check_grid_shape(spacing, rho, sigma_max, (low, high))
    if spacing == "uniform":
        return torch.tensor(ddim_timesteps(T, steps, "uniform"), dtype=torch.float64)
    top = high if sigma_max is None else sigma_max
    if spacing == "logsnr":
        lam_top = float(schedule.lambdas[-1]) if sigma_max is None else -math.log(sigma_max)
        lam = torch.linspace(lam_top, float(schedule.lambdas[0]), steps, dtype=torch.float64)
    else:
        lam = -torch.log(karras_sigmas(low, top, steps, KARRAS_RHO if rho is None else rho))
    t = schedule.t_of_lambda(lam)
    # The ends are T-1 and 0 by construction; pin them so no rounding moves the first or last model call.
    if sigma_max is None:
        t[0] = T - 1
    if steps > 1:
        t[-1] = 0.0
    return t


def grid_points(schedule: Schedule, steps: int, spacing: str, rho: float | None = None,
                sigma_max: float | None = None) -> list[GridPoint]:
    """The named grid as points, followed by the clean endpoint: steps + 1 points, steps intervals."""
    return [schedule.point(float(t)) for t in time_grid(schedule, steps, spacing, rho, sigma_max)] + [CLEAN]
