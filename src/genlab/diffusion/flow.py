"""Flow matching (Lipman et al. 2023) on the straight path of rectified flow (Liu et al. 2023):

    x_t = (1 - t) x0 + t eps,  t in [0, 1],  eps ~ N(0, I);   the network predicts the velocity u = eps - x0.

Training draws t uniform, or logit-normal (SD3, Esser et al. 2024, sec. 3.1: t = sigmoid(m + s n), n ~ N(0, 1)); the
network sees t scaled to [0, T) (T = diffusion.timesteps), the range its time embedding was built for.

Sampling reuses the ODE solvers, which run on a variance-preserving view of any Gaussian path: with
s_t = sqrt((1 - t)^2 + t^2), the VP sample is x_t / s_t, with alpha_t = (1 - t) / s_t and sigma_t = t / s_t. So
sigma / alpha = t / (1 - t) (diffusers' use_flow_sigmas), lambda_t = log((1 - t) / t), and x0 = x_t - t u,
eps = x_t + (1 - t) u exactly, with no division. Time grids (FlowSchedule.grid_times), from t_max = 1 - 1/T down to
t_min = 1/T, then the clean endpoint: "uniform" in t (the flow-matching default, as diffusers'
FlowMatchEulerDiscreteScheduler), "logsnr" uniform in lambda, "karras" Karras et al.'s rho = 7 grid in sigma / alpha;
`shift` (SD3's timestep shift, t' = shift t / (1 + (shift - 1) t)) moves every grid towards the noise for shift > 1.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from genlab.diffusion.gaussian import ModelFn
from genlab.diffusion.time_grids import KARRAS_RHO, TIME_GRIDS, GridPoint, check_grid_shape, karras_sigmas


class FlowTime(StrEnum):
    """diffusion.flow_time: how training draws t."""

    uniform = "uniform"  # t ~ U(0, 1) (Lipman et al., Liu et al.)
    logit_normal = "logit_normal"  # t = sigmoid(m + s n) (SD3, Esser et al. 2024, sec. 3.1)


def shifted(t: Tensor, shift: float) -> Tensor:
    """SD3's timestep shift (Esser et al. 2024, sec. 5.3.2): t' = shift t / (1 + (shift - 1) t); shift 1 is t."""
    return shift * t / (1.0 + (shift - 1.0) * t)


class FlowSchedule:
    """The straight path seen as a VP process, at any t in [0, 1] (float64): what the ODE solvers need."""

    def __init__(self, num_timesteps: int, shift: float = 1.0) -> None:
        self.num_timesteps, self.shift = int(num_timesteps), float(shift)
        self.t_max, self.t_min = 1.0 - 1.0 / self.num_timesteps, 1.0 / self.num_timesteps

    def lambda_(self, t: Tensor | float) -> Tensor:
        """lambda_t = log(alpha_t / sigma_t) = log((1 - t) / t)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.log1p(-t) - torch.log(t)

    def point(self, t: float) -> GridPoint:
        """The grid point at flow time t: VP alpha = (1 - t) / s, sigma = t / s."""
        s = math.hypot(1.0 - t, t)
        return GridPoint(t=float(t), alpha=(1.0 - t) / s, sigma=t / s)

    def point_of_sigma(self, sigma_ve: float) -> GridPoint:
        """The grid point whose sigma / alpha = t / (1 - t) is `sigma_ve`."""
        return self.point(sigma_ve / (1.0 + sigma_ve))

    def noise_range(self) -> tuple[float, float]:
        """The lowest and highest noise level sigma / alpha = t / (1 - t) of the grids (before the shift)."""
        return self.t_min / (1.0 - self.t_min), self.t_max / (1.0 - self.t_max)

    def grid_times(self, steps: int, spacing: str, rho: float | None = None,
                   sigma_max: float | None = None) -> Tensor:
        """`steps` decreasing flow times from t_max to t_min on the named grid (shifted), float64. rho and
        sigma_max (time_grids.check_grid_shape) shape the grid before the shift, which then moves every point."""
        if spacing not in TIME_GRIDS:
            raise ValueError(f"unknown spacing {spacing!r}: expected one of {', '.join(TIME_GRIDS)}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        check_grid_shape(spacing, rho, sigma_max, self.noise_range())
        lo = self.t_min
        hi = self.t_max if sigma_max is None else sigma_max / (1.0 + sigma_max)  # t = sigma / (1 + sigma)
        if spacing == "uniform":
            t = torch.linspace(hi, lo, steps, dtype=torch.float64)
        elif spacing == "logsnr":
            lam = torch.linspace(float(self.lambda_(hi)), float(self.lambda_(lo)), steps, dtype=torch.float64)
            t = torch.sigmoid(-lam)  # (1 - t) / t = e^lambda
        else:
            rho = KARRAS_RHO if rho is None else rho
            sigmas = karras_sigmas(lo / (1 - lo), hi / (1 - hi), steps, rho)  # sigma / alpha = t / (1 - t)
            t = sigmas / (1.0 + sigmas)
        return shifted(t, self.shift)


class FlowMatching(nn.Module):
    """The flow-matching objective and its sampling view; the network is always an argument."""

    process = "flow"
    chooses_target = False  # always the velocity
    prediction = "velocity"  # what the network outputs: u = eps - x0; its loss is logged as train/velocity_mse
    variance = "none"  # no ancestral sampler: only the ODE solvers sample a flow model
    likelihoods = ("ode",)  # through the probability-flow ODE (ode_likelihood.py); no variational bound
    discrete_samplers = False  # DDPM and DDIM need the discrete abar table of a VP model

    def __init__(self, num_timesteps: int = 1000, time_sampling: str = "uniform", logit_mean: float = 0.0,
                 logit_std: float = 1.0, shift: float = 1.0) -> None:
        super().__init__()
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps must be at least 2, got {num_timesteps}")
        if not logit_std > 0 or not shift > 0:
            raise ValueError(f"logit_std and shift must be > 0, got {logit_std} and {shift}")
        self.num_timesteps = int(num_timesteps)
        self.time_sampling, self.logit_mean, self.logit_std = FlowTime(time_sampling), logit_mean, logit_std
        self.shift = float(shift)
        self._schedule: FlowSchedule | None = None

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> "FlowMatching":
        """The objective of a run config's `diffusion` block: its time range, training times and sampling shift."""
        return cls(d["timesteps"], time_sampling=str(d["flow_time"]), logit_mean=d["logit_mean"],
                   logit_std=d["logit_std"], shift=d["time_shift"])

    def extra_repr(self) -> str:
        return (f"num_timesteps={self.num_timesteps}, time_sampling={str(self.time_sampling)!r}, "
                f"logit_mean={self.logit_mean}, logit_std={self.logit_std}, shift={self.shift}")

    def sample_times(self, n: int, device: torch.device | str, generator: torch.Generator | None) -> Tensor:
        """n network times t T in (0, T) (float32): t uniform or logit-normal."""
        if self.time_sampling == FlowTime.uniform:
            t = torch.rand(n, device=device, generator=generator)
        else:
            t = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(n, device=device, generator=generator))
        return t.clamp(1e-5, 1.0 - 1e-5) * self.num_timesteps  # never exactly data or noise

    def path(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = (1 - t) x0 + t eps for network times t [B] (t T)."""
        s = (t / self.num_timesteps).to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))  # [B] -> [B, 1, ..., 1]
        return (1.0 - s) * x0 + s * noise

    def training_losses(self, model_fn: ModelFn, x0: Tensor, t: Tensor, noise: Tensor | None = None,
                        model_kwargs: dict | None = None, weights: dict[str, float] | None = None) -> dict[str, Tensor]:
        """Per-sample [B] loss terms: target_mse, the MSE of the velocity eps - x0 (conditional flow matching's
        loss), and "loss" = its weighted sum."""
        weights = {"target_mse": 1.0} if weights is None else dict(weights)
        if set(weights) != {"target_mse"} or any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"loss weights {weights} invalid: a flow model has one term, target_mse, weighted >= 0")
        noise = torch.randn_like(x0) if noise is None else noise
        output = model_fn(self.path(x0, t, noise), t, **(model_kwargs or {}))
        mse = ((output - (noise - x0)) ** 2).mean(dim=tuple(range(1, x0.ndim)))
        return {"target_mse": mse, "loss": float(weights["target_mse"]) * mse}

    # ---- the sampling view (denoiser.py) ----

    def schedule(self) -> FlowSchedule:
        """The path as a VP process for the ODE solvers."""
        if self._schedule is None:
            self._schedule = FlowSchedule(self.num_timesteps, self.shift)
        return self._schedule

    def sigma_of_network_time(self, t: Tensor) -> Tensor:
        """sigma / alpha = t / (1 - t) [B] at the network's time input t T."""
        u = t.detach().double().cpu() / self.num_timesteps
        return u / (1.0 - u)

    def network_input(self, x: Tensor, t: Tensor, p: GridPoint) -> tuple[Tensor, Tensor]:
        """The flow sample x_t = (alpha + sigma)^-1 x_vp (s_t = 1 / (alpha + sigma)) and the network time t T."""
        return x / (p.alpha + p.sigma), t.to(torch.float32) * self.num_timesteps

    def denoised(self, output: Tensor, x_t: Tensor, p: GridPoint, prediction: str | None = None) -> tuple[Tensor, Tensor]:
        """(x0, eps) from the velocity u at the flow sample x_t: x0 = x_t - t u, eps = x_t + (1 - t) u."""
        if prediction not in (None, self.prediction):
            raise ValueError(f"a flow model's network predicts the velocity, not {prediction!r}")
        return x_t - p.t * output, x_t + (1.0 - p.t) * output  # p.t: the flow time of the grid point
