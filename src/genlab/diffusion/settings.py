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
from genlab.errors import GenlabError


class SamplerName(StrEnum):
    """The sampling algorithm."""

    ddim = "ddim"  # Song et al. 2021, eq. 12; eta = 0 deterministic
    ddpm = "ddpm"  # ancestral sampling (Ho et al. 2020, Algorithm 2), respaced when steps < T


# What `steps` is when a caller names a sampler but no steps: DDPM's paper setting runs all T, DDIM 50.
DEFAULT_STEPS: dict[SamplerName, int | None] = {SamplerName.ddpm: None, SamplerName.ddim: 50}
# Settings that only one sampler reads: naming them with another is an error, not a silent no-op.
ONLY_FOR: dict[str, SamplerName] = {"eta": SamplerName.ddim, "variance": SamplerName.ddpm}


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler, number of network evaluations, its knobs and the guidance strengths."""

    name: SamplerName = SamplerName.ddim
    steps: int | None = 50  # network evaluations; None: all T
    eta: float = 0.0  # DDIM: sigma_t(eta), eq. 16
    spacing: Spacing = Spacing.uniform  # which timesteps a few-step sampler visits
    variance: Variance | None = None  # DDPM: sigma_t^2 = beta or beta_tilde; None: the model's own
    clip: bool = True  # clamp the predicted x0 to [-1, 1] at every step
    guidance: float = 0.0  # classifier-free guidance weight w: eps~ = (1 + w) eps(c) - w eps(null)
    classifier_scale: float = 0.0  # classifier guidance s: eps^ = eps - s sqrt(1 - abar_t) grad log p(y | x_t)

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> "SamplerSettings":
        """The run config's `sampler` block (guidance there is the grids' CFG weight)."""
        return cls(name=SamplerName(block["name"]), steps=block["steps"], eta=float(block["eta"]),
                   spacing=Spacing(block["spacing"]),
                   variance=Variance(block["variance"]) if block["variance"] is not None else None,
                   clip=bool(block["clip_denoised"]), guidance=float(block["guidance"]))

    def override(self, **given: Any) -> "SamplerSettings":
        """A copy with the given settings; None means "not given". A new sampler name without `steps` takes that
        sampler's default number of steps (DEFAULT_STEPS), not the old sampler's."""
        given = {k: v for k, v in given.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise GenlabError(f"unknown sampler setting {unknown[0]!r}; valid: "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}.")
        for key in ("name", "spacing", "variance"):
            if key in given:
                given[key] = _choice(key, given[key])
        if "name" in given and given["name"] != self.name and "steps" not in given:
            given["steps"] = DEFAULT_STEPS[given["name"]]
        for key in ("eta", "guidance", "classifier_scale"):
            if key in given:
                given[key] = float(given[key])
        return dataclasses.replace(self, **given)

    def check(self, num_timesteps: int, prefix: str = "") -> "SamplerSettings":
        """Raise a GenlabError naming the key when a setting cannot work with a model of T = num_timesteps."""
        T = num_timesteps
        low = 2 if self.name == SamplerName.ddpm else 1  # a respaced DDPM needs a first and a last step
        if self.steps is not None and (isinstance(self.steps, bool) or not low <= self.steps <= T):
            raise GenlabError(f"{prefix}steps={self.steps} must lie in [{low}, T = {T}] for sampler={self.name}; "
                              f"{self.steps} is out of range (steps counts network evaluations; null: all T).")
        if not math.isfinite(self.eta) or self.eta < 0:
            raise GenlabError(f"{prefix}eta={self.eta} is out of range: it must be a finite number >= 0.")
        for key in ("guidance", "classifier_scale"):
            if not math.isfinite(getattr(self, key)):
                raise GenlabError(f"{prefix}{key}={getattr(self, key)} must be a finite number.")
        return self

    def check_applies(self, given: Mapping[str, Any], prefix: str = "") -> None:
        """Refuse settings given for a sampler that does not read them (eta for DDPM, variance for DDIM)."""
        for key, sampler in ONLY_FOR.items():
            if given.get(key) is not None and self.name != sampler:
                raise GenlabError(f"{prefix}{key}= applies to sampler={sampler}, not to sampler={self.name}"
                                  + (" (DDIM's noise is set by eta)." if key == "variance" else "."))

    def nfe(self, num_timesteps: int) -> int:
        """Network evaluations per sample (a CFG pass over a 2B batch counts once, as papers count it)."""
        return self.steps if self.steps is not None else num_timesteps

    def describe(self, num_timesteps: int, model_variance: str = "beta_tilde") -> dict[str, Any]:
        """The settings as used, for JSON records: steps resolved, only the keys this sampler reads."""
        out: dict[str, Any] = {"name": str(self.name), "steps": self.nfe(num_timesteps),
                               "eta": self.eta if self.name == SamplerName.ddim else None,
                               "spacing": str(self.spacing), "guidance": self.guidance}
        if self.name == SamplerName.ddpm:
            out["variance"] = str(self.variance or model_variance)
        if self.classifier_scale:
            out["classifier_scale"] = self.classifier_scale
        return out


def _choice(key: str, value: Any) -> StrEnum:
    kind = {"name": SamplerName, "spacing": Spacing, "variance": Variance}[key]
    try:
        return kind(str(value))
    except ValueError:
        raise GenlabError(f"{key}={value} is not a valid choice: use one of {', '.join(kind)}.") from None
