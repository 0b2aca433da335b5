"""Every sampler is one entry: how it runs, its default steps and grid, the grids and settings it accepts, whether it
is deterministic, and how many network evaluations it costs. Nothing else in genlab knows a sampler by its name.

Each entry's `run(denoiser, x_T, settings, *, generator, progress)` is the one signature of every sampler: a
Denoiser (the network and its guidance, denoiser.py), the initial noise, the resolved SamplerSettings (steps, grid,
clip and the settings the entry reads), and the generator of any noise the sampler adds. Adding a sampler is one
`register(SamplerEntry(...))`; `genlab sample`, `eval`, `table`, the validation grids, the FID callback and the API
then take it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

import torch
from torch import Tensor

from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.samplers import ddim_sample, ddpm_sample
from genlab.diffusion.schedules import Spacing
from genlab.diffusion.solvers import dpmpp_2m_sample, euler_sample, heun_sample, unipc_sample
from genlab.diffusion.time_grids import TIME_GRIDS

if TYPE_CHECKING:
    from genlab.diffusion.settings import SamplerSettings


class SamplerFn(Protocol):
    def __call__(self, denoiser: Denoiser, x_T: Tensor, settings: SamplerSettings, *,
                 generator: torch.Generator | None, progress: bool) -> Tensor: ...


@dataclass(frozen=True)
class SamplerEntry:
    """Every fact about one sampler."""

    name: str
    run: SamplerFn
    description: str  # the paper and what it is, for --help and error messages
    default_steps: int | None  # `steps` when a caller names the sampler but no steps; None: all T
    default_grid: Spacing  # the time grid unless `spacing` says otherwise
    grids: tuple[Spacing, ...]  # the grids it can use
    reads: tuple[str, ...] = ()  # the settings only it reads (eta, variance): naming them with another sampler fails
    min_steps: int = 1
    discrete: bool = False  # runs on a VP model's discrete abar table (DDPM, DDIM): not for flow models
    nfe: Callable[[int], int] = field(default=lambda steps: steps)  # network evaluations of `steps` steps
    deterministic: Callable[[SamplerSettings], bool] = field(default=lambda settings: True)  # depends on x_T only

    def steps_for_nfe(self, budget: int) -> int:
        """The most steps whose network evaluations do not exceed `budget` (at least one step)."""
        steps = 1
        while steps < budget and self.nfe(steps + 1) <= budget:
            steps += 1
        return steps


SAMPLERS: dict[str, SamplerEntry] = {}
ROBUST_SAMPLER = "ddim"  # what a non-finite sample suggests trying: x0 clipped at every step, no ODE extrapolation


def register(entry: SamplerEntry) -> SamplerEntry:
    """Add a sampler (or replace the one of that name); return it."""
    SAMPLERS[entry.name] = entry
    return entry


def sampler_entry(name: str) -> SamplerEntry:
    """The entry of a sampler; ValueError naming the choices for an unknown one."""
    try:
        return SAMPLERS[str(name)]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}") from None


def _steps(settings: SamplerSettings, denoiser: Denoiser) -> int:
    return settings.steps if settings.steps is not None else denoiser.diffusion.num_timesteps


def _grid(settings: SamplerSettings, denoiser: Denoiser) -> dict:
    """An ODE solver's grid: its steps, spacing, and the grid's rho and top noise level (None: the process's own)."""
    return dict(steps=_steps(settings, denoiser), spacing=str(settings.grid), rho=settings.rho,
                sigma_max=settings.sigma_max)


def _run_ddpm(denoiser: Denoiser, x_T: Tensor, settings: SamplerSettings, *, generator: torch.Generator | None,
              progress: bool) -> Tensor:
    variance = str(settings.variance) if settings.variance is not None else None
    return ddpm_sample(denoiser.diffusion, denoiser.eps, x_T.shape, x_T=x_T, generator=generator,
                       clip_denoised=settings.clip, cond_fn=denoiser.cond_fn, progress=progress,
                       steps=settings.steps, spacing=str(settings.grid), variance=variance)


def _run_ddim(denoiser: Denoiser, x_T: Tensor, settings: SamplerSettings, *, generator: torch.Generator | None,
              progress: bool) -> Tensor:
    return ddim_sample(denoiser.diffusion, denoiser.eps, x_T.shape, steps=_steps(settings, denoiser), eta=settings.eta,
                       spacing=str(settings.grid), x_T=x_T, generator=generator, clip_denoised=settings.clip,
                       cond_fn=denoiser.cond_fn, progress=progress)


def _run_heun(denoiser: Denoiser, x_T: Tensor, settings: SamplerSettings, *, generator: torch.Generator | None,
              progress: bool) -> Tensor:
    return heun_sample(denoiser, x_T, **_grid(settings, denoiser), clip=settings.clip, progress=progress,
                       s_churn=settings.s_churn, s_tmin=settings.s_tmin, s_tmax=settings.s_tmax,
                       s_noise=settings.s_noise, generator=generator)


def _ode(loop: Callable[..., Tensor]) -> SamplerFn:
    """An ODE solver loop as a registry function: deterministic, so the generator is not used."""

    def run(denoiser: Denoiser, x_T: Tensor, settings: SamplerSettings, *, generator: torch.Generator | None,
            progress: bool) -> Tensor:
        return loop(denoiser, x_T, **_grid(settings, denoiser), clip=settings.clip, progress=progress)

    return run


_DISCRETE = (Spacing.uniform, Spacing.quadratic)  # ddim_timesteps' integer subsets
_ODE_GRIDS = tuple(Spacing(g) for g in TIME_GRIDS)

# Default steps: DDPM's paper setting runs all T, DDIM 50; the solvers their papers' few-step settings (DPM-Solver++
# and UniPC 10-20 NFE; EDM's CIFAR-10 Heun 18 steps = 35 NFE). Default grids: uniform t for DPM-Solver++ and UniPC, as
# diffusers' schedulers default to (the log-SNR grid measured worse at 5 NFE on genlab's MNIST DDPM: domain FID 13.7
# against 6.6 for DPM-Solver++, experiments/results/mnist20/nfe_sweep.md); Karras et al.'s for Heun and Euler.
register(SamplerEntry("ddpm", _run_ddpm, "ancestral sampling (Ho et al. 2020, Algorithm 2), respaced when steps < T",
                      None, Spacing.uniform, _DISCRETE, reads=("variance",), min_steps=2, discrete=True,
                      deterministic=lambda settings: False))
register(SamplerEntry("ddim", _run_ddim, "DDIM (Song et al. 2021, eq. 12); eta = 0 is deterministic", 50,
                      Spacing.uniform, _DISCRETE, reads=("eta",), discrete=True,
                      deterministic=lambda settings: settings.eta == 0))
register(SamplerEntry("dpmpp_2m", _ode(dpmpp_2m_sample), "DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2)", 20,
                      Spacing.uniform, _ODE_GRIDS))
register(SamplerEntry("unipc", _ode(unipc_sample), "UniPC, bh2, order 2 with the UniC corrector (Zhao et al. 2023)",
                      10, Spacing.uniform, _ODE_GRIDS))
register(SamplerEntry("heun", _run_heun, "Heun's method (Karras et al. 2022, Algorithm 1; Algorithm 2 with "
                      "s_churn > 0): 2 steps - 1 NFE", 18, Spacing.karras, _ODE_GRIDS,
                      reads=("s_churn", "s_tmin", "s_tmax", "s_noise"), nfe=lambda steps: 2 * steps - 1,
                      deterministic=lambda settings: settings.s_churn == 0))
register(SamplerEntry("euler", _ode(euler_sample), "Euler's method, the first-order form of Karras et al.'s "
                      "Algorithm 1", 50, Spacing.karras, _ODE_GRIDS))
