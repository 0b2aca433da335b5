"""One description of how to sample a diffusion model: `SamplerSettings`, used by every caller.

The run config's `sampler` block, `genlab sample` / `eval` arguments, table cells, the validation grids and the FID
callback all become a SamplerSettings, checked against the model's T by `check`. `steps` counts network evaluations
for every sampler (DDPM runs `steps` respaced ancestral steps); None means all T steps.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping

from genlab.diffusion.gaussian import Variance
from genlab.diffusion.schedules import Spacing
from genlab.diffusion.solvers import SOLVER_DEFAULT_SPACING, SOLVERS, solver_nfe
from genlab.diffusion.time_grids import TIME_GRIDS
from genlab.errors import GenlabError


class SamplerName(StrEnum):
    """The sampling algorithm."""

    ddim = "ddim"  # Song et al. 2021, eq. 12; eta = 0 deterministic
    ddpm = "ddpm"  # ancestral sampling (Ho et al. 2020, Algorithm 2), respaced when steps < T
    dpmpp_2m = "dpmpp_2m"  # DPM-Solver++(2M), Lu et al. 2022, Algorithm 2
    unipc = "unipc"  # UniPC, Zhao et al. 2023, B(h) = bh2, order 2 with the UniC corrector
    heun = "heun"  # Karras et al. 2022, Algorithm 1 (deterministic): 2 steps - 1 network evaluations
    euler = "euler"  # the first-order form of Karras et al.'s Algorithm 1


# What `steps` is when a caller names a sampler but no steps: DDPM's paper setting runs all T, DDIM 50; the solvers
# their papers' few-step settings (DPM-Solver++ and UniPC 10-20 NFE; EDM's CIFAR-10 Heun 18 steps = 35 NFE).
DEFAULT_STEPS: dict[SamplerName, int | None] = {
    SamplerName.ddpm: None, SamplerName.ddim: 50, SamplerName.dpmpp_2m: 20, SamplerName.unipc: 10,
    SamplerName.heun: 18, SamplerName.euler: 50,
}
# The time grid each sampler uses unless `spacing` says otherwise, and the grids it can use.
DEFAULT_SPACING: dict[SamplerName, Spacing] = {
    SamplerName.ddpm: Spacing.uniform, SamplerName.ddim: Spacing.uniform,
    **{SamplerName(k): Spacing(v) for k, v in SOLVER_DEFAULT_SPACING.items()},
}
SPACINGS_FOR: dict[SamplerName, tuple[Spacing, ...]] = {
    **{name: (Spacing.uniform, Spacing.quadratic) for name in (SamplerName.ddpm, SamplerName.ddim)},
    **{SamplerName(k): tuple(Spacing(g) for g in TIME_GRIDS) for k in SOLVERS},
}
# Settings that only some samplers read: naming them with another is an error, not a silent no-op.
ONLY_FOR: dict[str, tuple[SamplerName, ...]] = {"eta": (SamplerName.ddim,), "variance": (SamplerName.ddpm,)}
DETERMINISTIC = (SamplerName.dpmpp_2m, SamplerName.unipc, SamplerName.heun, SamplerName.euler)  # and ddim, eta = 0


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler, number of network evaluations, its knobs and the guidance strengths."""

    name: SamplerName = SamplerName.ddim
    steps: int | None = 50  # network evaluations; None: all T
    eta: float = 0.0  # DDIM: sigma_t(eta), eq. 16
    spacing: Spacing | None = None  # the time grid (which timesteps a few-step sampler visits); None: the sampler's
    variance: Variance | None = None  # DDPM: sigma_t^2 = beta or beta_tilde; None: the model's own
    clip: bool = True  # clamp the predicted x0 to [-1, 1] at every step
    guidance: float = 0.0  # classifier-free guidance weight w: eps~ = (1 + w) eps(c) - w eps(null)
    classifier_scale: float = 0.0  # classifier guidance s: eps^ = eps - s sqrt(1 - abar_t) grad log p(y | x_t)

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> "SamplerSettings":
        """The run config's `sampler` block (guidance there is the grids' CFG weight)."""
        return cls(name=SamplerName(block["name"]), steps=block["steps"], eta=float(block["eta"]),
                   spacing=Spacing(block["spacing"]) if block["spacing"] is not None else None,
                   variance=Variance(block["variance"]) if block["variance"] is not None else None,
                   clip=bool(block["clip_denoised"]), guidance=float(block["guidance"]))

    def override(self, **given: Any) -> "SamplerSettings":
        """A copy with the given settings; None means "not given". A new sampler name starts from that sampler's
        default steps and time grid (DEFAULT_STEPS, DEFAULT_SPACING) unless they are given too."""
        given = {k: v for k, v in given.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise GenlabError(f"unknown sampler setting {unknown[0]!r}; valid: "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}.")
        for key in ("name", "spacing", "variance"):
            if key in given:
                given[key] = _choice(key, given[key])
        if "name" in given and given["name"] != self.name:  # a new sampler starts from its own defaults
            given.setdefault("steps", DEFAULT_STEPS[given["name"]])
            given.setdefault("spacing", None)
        for key in ("eta", "guidance", "classifier_scale"):
            if key in given:
                given[key] = float(given[key])
        return dataclasses.replace(self, **given)

    def check(self, num_timesteps: int | None, prefix: str = "") -> "SamplerSettings":
        """Raise a GenlabError naming the key when a setting cannot work with a model of T = num_timesteps; None
        checks what needs no model (a table spec before its checkpoints load): steps then has only its lower bound."""
        T = num_timesteps
        low = 2 if self.name == SamplerName.ddpm else 1  # a respaced DDPM needs a first and a last step
        if self.steps is not None and T is None and (isinstance(self.steps, bool) or self.steps < low):
            raise GenlabError(f"{prefix}steps={self.steps} is out of range: sampler={self.name} needs at least {low}.")
        if self.steps is not None and T is not None and (isinstance(self.steps, bool) or not low <= self.steps <= T):
            raise GenlabError(f"{prefix}steps={self.steps} must lie in [{low}, T = {T}] for sampler={self.name}; "
                              f"{self.steps} is out of range (steps counts network evaluations; null: all T).")
        if not math.isfinite(self.eta) or self.eta < 0:
            raise GenlabError(f"{prefix}eta={self.eta} is out of range: it must be a finite number >= 0.")
        for key in ("guidance", "classifier_scale"):
            if not math.isfinite(getattr(self, key)):
                raise GenlabError(f"{prefix}{key}={getattr(self, key)} must be a finite number.")
        if self.spacing is not None and self.spacing not in SPACINGS_FOR[self.name]:
            raise GenlabError(f"{prefix}spacing={self.spacing} does not apply to sampler={self.name}: use one of "
                              f"{', '.join(SPACINGS_FOR[self.name])}.")
        if self.eta != 0 and self.name not in ONLY_FOR["eta"]:
            raise GenlabError(f"{prefix}eta={self.eta} applies to sampler=ddim only; sampler={self.name} is "
                              "deterministic (or, for ddpm, set by variance).")
        return self

    @property
    def grid(self) -> Spacing:
        """The time grid used: `spacing`, or the sampler's default."""
        return self.spacing if self.spacing is not None else DEFAULT_SPACING[self.name]

    @property
    def deterministic(self) -> bool:
        """The samples depend on x_T only (the same x_T decodes alike at any step count)."""
        return self.name in DETERMINISTIC or (self.name == SamplerName.ddim and self.eta == 0)

    def check_applies(self, given: Mapping[str, Any], prefix: str = "") -> None:
        """Refuse settings given for a sampler that does not read them (eta for DDPM, variance for DDIM)."""
        for key, samplers in ONLY_FOR.items():
            if given.get(key) is not None and self.name not in samplers:
                raise GenlabError(f"{prefix}{key}= applies to sampler={'|'.join(samplers)}, not to sampler={self.name}"
                                  + (" (DDIM's noise is set by eta)." if key == "variance" else "."))

    def nfe(self, num_timesteps: int) -> int:
        """Network evaluations per sample (a CFG pass over a 2B batch counts once, as papers count it; heun's
        steps = S is 2S - 1); classifier-guidance gradients are not counted."""
        return solver_nfe(str(self.name), self.steps if self.steps is not None else num_timesteps)

    def with_nfe(self, nfe: int) -> "SamplerSettings":
        """The same sampler with the most steps whose network evaluations do not exceed `nfe` (heun: odd NFE only)."""
        if isinstance(nfe, bool) or nfe < 1:
            raise GenlabError(f"nfe={nfe} is out of range: it must be a positive number of network evaluations.")
        steps = (nfe + 1) // 2 if self.name == SamplerName.heun else nfe
        return dataclasses.replace(self, steps=steps)

    def describe(self, num_timesteps: int, model_variance: str = "beta_tilde") -> dict[str, Any]:
        """The settings as used, for JSON records: steps resolved, only the keys this sampler reads."""
        out: dict[str, Any] = {"name": str(self.name), "steps": self.nfe(num_timesteps),
                               "eta": self.eta if self.name == SamplerName.ddim else None,
                               "spacing": str(self.grid), "guidance": self.guidance}
        if self.name == SamplerName.ddpm:
            out["variance"] = str(self.variance or model_variance)
        if self.classifier_scale:
            out["classifier_scale"] = self.classifier_scale
        out["nfe"] = self.nfe(num_timesteps)
        return out

    def label(self, num_timesteps: int) -> str:
        """A short description for logs, e.g. "dpmpp_2m, 10 steps on the logsnr grid, 10 NFE"."""
        steps = self.steps if self.steps is not None else num_timesteps
        extra = f", eta {self.eta:g}" if self.name == SamplerName.ddim else ""
        return f"{self.name}, {steps} steps on the {self.grid} grid{extra}, {self.nfe(num_timesteps)} NFE"


def _choice(key: str, value: Any) -> StrEnum:
    kind = {"name": SamplerName, "spacing": Spacing, "variance": Variance}[key]
    try:
        return kind(str(value))
    except ValueError:
        raise GenlabError(f"{key}={value} is not a valid choice: use one of {', '.join(kind)}.") from None
