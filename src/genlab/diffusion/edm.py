"""EDM (Karras et al. 2022, "Elucidating the design space of diffusion-based generative models"): the noise process
x = x0 + sigma n, a preconditioned network, and its training distribution and weighting.

    D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)                       (eq. 7, Table 1)
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),  c_in = 1 / sqrt(sigma^2 + sd^2)
    ln sigma ~ N(P_mean, P_std^2),  lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2      (Table 1: -1.2, 1.2)

lambda(sigma) c_out^2 = 1, so the loss is the plain MSE of F against its effective target (x0 - c_skip x) / c_out
(eq. 8). EDM feeds the network c_noise = ln(sigma) / 4; genlab's U-Net embeds times in [0, T), so F sees ln sigma
mapped linearly from [ln sigma_min, ln sigma_max] onto [0, T) (T = diffusion.timesteps): the same information, in
the range its time embedding was built for.

The ODE solvers see the VP view of x = x0 + sigma n: alpha = 1 / sqrt(1 + sigma^2), sigma_t = sigma alpha, so the
VE noise level sigma_t / alpha is EDM's sigma itself, and the VP sample is x alpha. Grids (EDMSchedule.grid_times):
"karras" (EDM's eq. 5, rho = 7, sigma_max = 80 to sigma_min = 0.002, their Table 1), and "logsnr" / "uniform",
both uniform in ln sigma. A sampler's rho and sigma_max reshape the grid without touching the network's time mapping
(5 NFE on the 20-minute MNIST model: rho 2 from sigma 30 gives 1.10x and 1.26x the 20-NFE FID for two training
seeds, the default grid 2.2x; benchmarks/results/flow_few_steps.md).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from genlab.diffusion.gaussian import ModelFn
from genlab.diffusion.time_grids import TIME_GRIDS, GridPoint, check_grid_shape, karras_sigmas


class EDMSchedule:
    """EDM's process in its VP view, indexed by sigma (the model time of a grid point is its sigma)."""

    def __init__(self, sigma_min: float, sigma_max: float, rho: float = 7.0) -> None:
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)

    def lambda_(self, sigma: Tensor | float) -> Tensor:
        """lambda = log(alpha / sigma_t) = -ln sigma."""
        return -torch.log(torch.as_tensor(sigma, dtype=torch.float64))

    def point(self, sigma: float) -> GridPoint:
        """The grid point at noise level sigma: alpha = 1 / sqrt(1 + sigma^2), sigma_t = sigma alpha."""
        alpha = 1.0 / math.sqrt(1.0 + sigma * sigma)
        return GridPoint(t=float(sigma), alpha=alpha, sigma=sigma * alpha)

    def point_of_sigma(self, sigma_ve: float) -> GridPoint:
        """The grid point of noise level sigma (EDM's sigma is the VE one)."""
        return self.point(sigma_ve)

    def noise_range(self) -> tuple[float, float]:
        """The lowest and highest sigma of the grids: the config's edm_sigma_min and edm_sigma_max."""
        return self.sigma_min, self.sigma_max

    def grid_times(self, steps: int, spacing: str, rho: float | None = None,
                   sigma_max: float | None = None) -> Tensor:
        """`steps` decreasing sigmas from sigma_max to sigma_min: Karras' rho grid, or uniform in ln sigma. rho and
        sigma_max, where given, replace the schedule's own for this grid (time_grids.check_grid_shape)."""
        if spacing not in TIME_GRIDS:
            raise ValueError(f"unknown spacing {spacing!r}: expected one of {', '.join(TIME_GRIDS)}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        check_grid_shape(spacing, rho, sigma_max, self.noise_range())
        top = self.sigma_max if sigma_max is None else sigma_max
        if spacing == "karras":
            return karras_sigmas(self.sigma_min, top, steps, self.rho if rho is None else rho)
        return torch.exp(torch.linspace(math.log(top), math.log(self.sigma_min), steps, dtype=torch.float64))


class EDM(nn.Module):
    """The EDM objective and its sampling view; the network F is always an argument."""

    process = "edm"
    chooses_target = False  # always F, the preconditioned network of eq. 7
    prediction = "preconditioned"  # its loss is logged as train/preconditioned_mse
    variance = "none"
    likelihoods = ("ode",)  # through the probability-flow ODE (ode_likelihood.py); no variational bound
    discrete_samplers = False

    def __init__(self, num_timesteps: int = 1000, sigma_min: float = 0.002, sigma_max: float = 80.0,
                 sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2, rho: float = 7.0) -> None:
        super().__init__()
        if not 0 < sigma_min < sigma_max or not sigma_data > 0 or not p_std > 0:
            raise ValueError("need 0 < sigma_min < sigma_max, sigma_data > 0 and p_std > 0")
        self.num_timesteps = int(num_timesteps)
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)
        self.p_mean, self.p_std, self.rho = float(p_mean), float(p_std), float(rho)
        self._log_range = (math.log(self.sigma_min), math.log(self.sigma_max))

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> "EDM":
        """The objective of a run config's `diffusion` block (its edm_* keys)."""
        return cls(d["timesteps"], sigma_min=d["edm_sigma_min"], sigma_max=d["edm_sigma_max"],
                   sigma_data=d["edm_sigma_data"], p_mean=d["edm_p_mean"], p_std=d["edm_p_std"], rho=d["edm_rho"])

    def extra_repr(self) -> str:
        return (f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, sigma_data={self.sigma_data}, "
                f"p_mean={self.p_mean}, p_std={self.p_std}, rho={self.rho}")

    # ---- sigma and the network's time ----

    def time_of(self, sigma: Tensor) -> Tensor:
        """The network's time input for sigma: ln sigma mapped from [ln sigma_min, ln sigma_max] onto [0, T)."""
        lo, hi = self._log_range
        return ((torch.log(sigma) - lo) / (hi - lo) * self.num_timesteps).to(torch.float32)

    def sigma_of(self, t: Tensor) -> Tensor:
        """The inverse of time_of."""
        lo, hi = self._log_range
        return torch.exp(lo + t.double() / self.num_timesteps * (hi - lo))

    def sigma_of_network_time(self, t: Tensor) -> Tensor:
        """sigma [B] at the network's time input (EDM's sigma is already sigma / alpha)."""
        return self.sigma_of(t.detach().cpu())

    def preconditioning(self, sigma: Tensor | float) -> tuple[Any, Any, Any]:
        """(c_skip, c_out, c_in) of Table 1 (EDM column)."""
        sd2 = self.sigma_data**2
        root = (sigma**2 + sd2) ** 0.5
        return sd2 / (sigma**2 + sd2), sigma * self.sigma_data / root, 1.0 / root

    # ---- training ----

    def sample_times(self, n: int, device: torch.device | str, generator: torch.Generator | None) -> Tensor:
        """n network times of sigma with ln sigma ~ N(P_mean, P_std^2) (Table 1)."""
        log_sigma = self.p_mean + self.p_std * torch.randn(n, device=device, generator=generator)
        return self.time_of(torch.exp(log_sigma))

    def training_losses(self, model_fn: ModelFn, x0: Tensor, t: Tensor, noise: Tensor | None = None,
                        model_kwargs: dict | None = None, weights: dict[str, float] | None = None) -> dict[str, Tensor]:
        """Per-sample [B] terms: target_mse, lambda(sigma) |D - x0|^2 = |F - (x0 - c_skip x) / c_out|^2 (eq. 8),
        and "loss" = its weighted sum."""
        weights = {"target_mse": 1.0} if weights is None else dict(weights)
        if set(weights) != {"target_mse"} or any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"loss weights {weights} invalid: an EDM model has one term, target_mse, weighted >= 0")
        noise = torch.randn_like(x0) if noise is None else noise
        sigma = self.sigma_of(t).to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))  # [B] -> [B, 1, ..., 1]
        x = x0 + sigma * noise
        c_skip, c_out, c_in = self.preconditioning(sigma)
        output = model_fn(c_in * x, t, **(model_kwargs or {}))
        mse = ((output - (x0 - c_skip * x) / c_out) ** 2).mean(dim=tuple(range(1, x0.ndim)))
        return {"target_mse": mse, "loss": float(weights["target_mse"]) * mse}

    # ---- the sampling view (denoiser.py) ----

    def schedule(self) -> EDMSchedule:
        """The process as a VP one for the ODE solvers, by sigma."""
        return EDMSchedule(self.sigma_min, self.sigma_max, self.rho)

    def network_input(self, x: Tensor, t: Tensor, p: GridPoint) -> tuple[Tensor, Tensor]:
        """c_in times EDM's sample x / alpha, and the network time of p's sigma."""
        sigma = torch.full(t.shape, p.t, dtype=torch.float64, device=t.device)
        return (x / p.alpha) * self.preconditioning(p.t)[2], self.time_of(sigma)

    def denoised(self, output: Tensor, x_in: Tensor, p: GridPoint, prediction: str | None = None) -> tuple[Tensor, Tensor]:
        """(x0, eps): D = c_skip x + c_out F with x = x_in / c_in (eq. 7), and eps = (x - D) / sigma."""
        if prediction not in (None, self.prediction):
            raise ValueError(f"an EDM network outputs F, not {prediction!r}")
        sigma = p.t
        c_skip, c_out, c_in = self.preconditioning(sigma)
        x = x_in / c_in
        d = c_skip * x + c_out * output
        return d, (x - d) / sigma
