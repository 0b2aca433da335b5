"""Gaussian diffusion (Ho et al. 2020, "DDPM"): forward process, posterior, reverse step moments, training loss.

The class holds only the schedule. The network is passed in as `model_fn(x_t, t, **model_kwargs) -> eps`, where
`t` is a LongTensor [B] of original timesteps in [0, T). Equation numbers refer to the DDPM paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, Mapping, Protocol

import torch
from torch import Tensor, nn

from genlab.diffusion.prediction import LossWeighting, Prediction, denoised, loss_weight, target
from genlab.diffusion.schedules import make_betas
from genlab.diffusion.time_grids import GridPoint, VPSchedule

class Variance(StrEnum):
    """sigma_t^2 of the reverse process (DDPM sec. 3.2)."""

    beta_tilde = "beta_tilde"  # posterior variance, DDPM eq. 7
    beta = "beta"  # sigma^2 = beta_t; Ho et al.'s CIFAR-10 FID 3.17 used this


VarianceName = Variance  # the older name
VARIANCES: tuple[str, ...] = tuple(m.value for m in Variance)


def predict_x0(x_t: Tensor, eps: Tensor, sqrt_recip_alpha_bar: Tensor, sqrt_recipm1_alpha_bar: Tensor) -> Tensor:
    """x0 = x_t / sqrt(abar_t) - sqrt(1 / abar_t - 1) eps: eq. 4 solved for x0 (DDIM eq. 12's "predicted x0").

    The one place this formula is written; the coefficients come precomputed (the schedule's float64 buffers) or from
    `x0_coefficients` (a sampler's own alpha_bar).
    """
    return sqrt_recip_alpha_bar * x_t - sqrt_recipm1_alpha_bar * eps


def x0_coefficients(alpha_bar: Tensor) -> tuple[Tensor, Tensor]:
    """(1 / sqrt(abar), sqrt(1 / abar - 1)), the coefficients of `predict_x0`."""
    return torch.rsqrt(alpha_bar), torch.sqrt(1.0 / alpha_bar - 1.0)


class ModelFn(Protocol):
    """The network contract: predicts eps from x_t and original timesteps t [B]."""

    def __call__(self, x: Tensor, t: Tensor, **model_kwargs: object) -> Tensor: ...


@dataclass
class LossInputs:
    """What a loss term may read: the clean batch, its noised version, and the network's output."""

    x0: Tensor
    x_t: Tensor
    t: Tensor
    noise: Tensor
    model_output: Tensor
    target: Tensor  # what the network should output: eps, x0 or v (diffusion.prediction)
    weight: Tensor  # [B, 1, ..., 1] weight of each sample's target MSE (diffusion.loss_weighting)


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch one: [B, ...] -> [B]."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def _target_mse(inp: LossInputs) -> Tensor:
    # L_simple, eq. 14: || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2, per sample; with another
    # prediction target the same MSE of that target, and with Min-SNR its per-timestep weight (prediction.py).
    return mean_flat(inp.weight * (inp.target - inp.model_output) ** 2)


# Named loss terms; `training_losses` returns each requested one and their weighted sum.
LOSS_TERMS: dict[str, Callable[[LossInputs], Tensor]] = {"target_mse": _target_mse}


class GaussianDiffusion(nn.Module):
    """Schedule buffers and the DDPM math. An nn.Module only so its buffers follow `.to(device)`.

    All buffers are non-persistent (never in checkpoints: they are rebuilt from the config), there are no
    parameters, and the network is never stored here.
    """

    def __init__(self, betas: Tensor, variance: str = "beta_tilde", prediction: str = "eps",
                 loss_weighting: str = "uniform", min_snr_gamma: float = 5.0) -> None:
        super().__init__()
        self.prediction, self.loss_weighting = Prediction(prediction), LossWeighting(loss_weighting)
        self.min_snr_gamma = float(min_snr_gamma)
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}: expected one of {', '.join(VARIANCES)}")
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(f"betas must be 1-D with at least 2 timesteps, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta must lie in (0, 1)")
        self.num_timesteps = int(betas.numel())
        self.variance = variance
        self._schedule: VPSchedule | None = None  # schedule(), built on first use

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)  # abar_t, eq. 4
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])  # abar_{t-1}, abar_{-1} = 1
        # beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t, eq. 7; it is 0 at t = 0.
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # log(0) at t = 0 is replaced by log beta_tilde_1; the t = 0 step adds no noise, so only the log matters.
        posterior_log_variance_clipped = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))
        if variance == "beta_tilde":
            # sigma_t^2 = beta_tilde_t (sec. 3.2): the variance is 0 at t = 0, its log is the clipped one.
            model_variance, model_log_variance = posterior_variance, posterior_log_variance_clipped
        else:
            # sigma_t^2 = beta_t (sec. 3.2), except that at t = 0 improved-diffusion uses beta_tilde_1 (for a better
            # decoder likelihood). Sampling is unaffected: no noise is added at t = 0.
            model_variance = torch.cat([posterior_variance[1:2], betas[1:]])
            model_log_variance = torch.log(model_variance)

        buffers = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1.0).sqrt(),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": posterior_log_variance_clipped,
            # mu_tilde_t = coef1 x0 + coef2 x_t, eq. 7
            "posterior_mean_coef1": alphas_cumprod_prev.sqrt() * betas / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": alphas.sqrt() * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "model_variance": model_variance,
            "model_log_variance": model_log_variance,
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)

    # ---- what the code that serves every objective asks of this one (flow.py answers the same) ----

    @classmethod
    def from_config(cls, d: Mapping[str, Any]) -> "GaussianDiffusion":
        """The process of a run config's `diffusion` block: its betas, variance, target and loss weighting."""
        kwargs = {"beta_start": d["beta_start"], "beta_end": d["beta_end"]} if d["schedule"] == "linear" else {}
        return cls(make_betas(str(d["schedule"]), d["timesteps"], **kwargs), variance=str(d["variance"]),
                   prediction=str(d["prediction"]), loss_weighting=str(d["loss_weighting"]),
                   min_snr_gamma=d["min_snr_gamma"])

    process = "vp"
    chooses_target = True  # diffusion.prediction: eps, x0 or v
    likelihoods = ("bound", "ode")  # the variational bound (likelihood.py) and the ODE's (ode_likelihood.py)
    discrete_samplers = True  # DDPM and DDIM, on the abar table

    def sample_times(self, n: int, device: torch.device | str, generator: torch.Generator | None) -> Tensor:
        """n training timesteps t ~ U{0, ..., T-1}."""
        return torch.randint(0, self.num_timesteps, (n,), device=device, generator=generator)

    def schedule(self) -> VPSchedule:
        """alpha, sigma and lambda at fractional t, for the ODE solvers (float64 from the betas, built once: the
        betas are fixed at construction)."""
        if self._schedule is None:
            self._schedule = VPSchedule.from_diffusion(self)
        return self._schedule

    def sigma_of_network_time(self, t: Tensor) -> Tensor:
        """sigma / alpha [B] at the network's time input (the model time, fractional or not): the noise level that
        the guidance interval reads."""
        return self.schedule().sigma_ve(t.detach().double().cpu())

    def network_input(self, x: Tensor, t: Tensor, p: GridPoint) -> tuple[Tensor, Tensor]:
        """The network sees the VP sample and the model time as they are."""
        return x, t

    def denoised(self, output: Tensor, x_t: Tensor, p: GridPoint, prediction: str | None = None) -> tuple[Tensor, Tensor]:
        """(x0, eps) from the network's output in its target (`prediction`, default this model's; prediction.py)."""
        return denoised(prediction or self.prediction, output, x_t, p.alpha, p.sigma)

    def extra_repr(self) -> str:
        return (f"num_timesteps={self.num_timesteps}, variance={self.variance!r}, prediction={str(self.prediction)!r}, "
                f"loss_weighting={str(self.loss_weighting)!r}")

    def extract(self, buf: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """The schedule accessor: buf[t] shaped [B, 1, ..., 1] to broadcast against x, in x's dtype and device; `buf` itself stays put."""
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x.shape[0]}], got {tuple(t.shape)}")
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"t must hold integer timesteps, got dtype {t.dtype}")
        out = buf[t.to(buf.device)].to(device=x.device, dtype=x.dtype)
        return out.view(x.shape[0], *([1] * (x.ndim - 1)))  # [B] -> [B, 1, ..., 1]

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I), written with the given noise (eq. 4)."""
        return (
            self.extract(self.sqrt_alphas_cumprod, t, x0) * x0
            + self.extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def predict_x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), eq. 4 solved for x0."""
        return predict_x0(x_t, eps, self.extract(self.sqrt_recip_alphas_cumprod, t, x_t),
                          self.extract(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    def predict_eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t / sqrt(abar_t) - x0) / sqrt(1/abar_t - 1), eq. 4 solved for eps."""
        return (self.extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) / self.extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    def q_posterior_mean_variance(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (eqs. 6-7)."""
        mean = (
            self.extract(self.posterior_mean_coef1, t, x_t) * x0
            + self.extract(self.posterior_mean_coef2, t, x_t) * x_t
        )
        variance = self.extract(self.posterior_variance, t, x_t)
        log_variance = self.extract(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    def p_mean_variance_from_eps(
        self, x_t: Tensor, t: Tensor, eps: Tensor, clip_denoised: bool = True
    ) -> dict[str, Tensor]:
        """Moments of p(x_{t-1} | x_t) given the predicted eps; pure math, no network.

        The mean is the posterior mean at x0_hat = predict_x0_from_eps (eq. 11 when unclipped); with
        `clip_denoised`, x0_hat is clamped to [-1, 1] first. "eps" is returned as given.
        """
        pred_x0 = self.predict_x0_from_eps(x_t, t, eps)
        if clip_denoised:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior_mean_variance(pred_x0, x_t, t)
        return {
            "mean": mean,
            "variance": self.extract(self.model_variance, t, x_t),
            "log_variance": self.extract(self.model_log_variance, t, x_t),
            "pred_x0": pred_x0,
            "eps": eps,
        }

    def p_mean_variance(
        self,
        model_fn: ModelFn,
        x_t: Tensor,
        t: Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
    ) -> dict[str, Tensor]:
        """Call the network at (x_t, t), then `p_mean_variance_from_eps`.

        Keys: "mean", "variance", "log_variance" (each [B, 1, ...] or x's shape), "pred_x0", "eps".
        """
        eps = model_fn(x_t, t, **(model_kwargs or {}))
        return self.p_mean_variance_from_eps(x_t, t, eps, clip_denoised)

    def training_losses(
        self,
        model_fn: ModelFn,
        x0: Tensor,
        t: Tensor,
        noise: Tensor | None = None,
        model_kwargs: dict | None = None,
        weights: dict[str, float] | None = None,
    ) -> dict[str, Tensor]:
        """Per-sample [B] loss terms by name, plus "loss" = sum of weight * term; default weights {"target_mse": 1}."""
        weights = {"target_mse": 1.0} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown or not weights:
            raise ValueError(f"loss weights {unknown or '{}'} invalid: name one or more of {', '.join(LOSS_TERMS)}")
        if any(float(w) < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {weights}")
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        alpha_bar = self.extract(self.alphas_cumprod, t, x0)
        inp = LossInputs(x0=x0, x_t=x_t, t=t, noise=noise, model_output=model_fn(x_t, t, **(model_kwargs or {})),
                         target=target(self.prediction, x0, noise, alpha_bar),
                         weight=loss_weight(self.prediction, self.loss_weighting, alpha_bar, self.min_snr_gamma))
        terms = {name: LOSS_TERMS[name](inp) for name in weights}
        terms["loss"] = sum(float(weights[name]) * terms[name] for name in weights)
        return terms
