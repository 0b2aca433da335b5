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
from genlab.diffusion.sampler_registry import SAMPLERS, SamplerEntry, sampler_entry
from genlab.diffusion.schedules import Spacing
from genlab.diffusion.time_grids import GRID_SHAPES
from genlab.errors import GenlabError

# The sampler settings every caller may give (the run config's `sampler` block, sample/eval arguments, table cells,
# the API), by the names SamplerSettings uses; `sampler` is the name of `name` on a command line.
SAMPLER_FIELDS: tuple[str, ...] = ("sampler", "steps", "eta", "spacing", "rho", "sigma_max", "variance", "clip",
                                   "guidance", "guidance_sigma_min", "guidance_sigma_max", "guide", "guide_scale",
                                   "classifier_scale", "s_churn", "s_tmin", "s_tmax", "s_noise")
# The settings that are numbers, converted to float wherever settings arrive (a config block, override).
FLOAT_SETTINGS = ("eta", "guidance", "guidance_sigma_min", "guidance_sigma_max", "guide_scale", "classifier_scale",
                  "s_churn", "s_tmin", "s_tmax", "s_noise")
# The grid's shape (time_grids.GRID_SHAPES): numbers where given, None for the process's own.
GRID_SETTINGS = tuple(GRID_SHAPES)
# What each shape setting does, for the message that refuses it on another grid.
_SHAPE_ROLES = {"rho": "shapes the karras grid (Karras et al. 2022, eq. 5)",
                "sigma_max": "sets where a karras or logsnr grid starts"}
# Read by some samplers only (SamplerEntry.reads): naming them with another is an error, not a silent no-op.
OPTIONAL_SETTINGS = ("eta", "variance", "s_churn", "s_tmin", "s_tmax", "s_noise")


@dataclass(frozen=True)
class SamplerSettings:
    """Sampler, number of network evaluations, its knobs and the guidance strengths."""

    name: str = "ddim"  # a sampler of the registry (sampler_registry.py)
    steps: int | None = 50  # network evaluations; None: all T
    eta: float = 0.0  # DDIM: sigma_t(eta), eq. 16
    spacing: Spacing | None = None  # the time grid (which timesteps a few-step sampler visits); None: the sampler's
    # The shape of a grid defined by the noise level: the Karras grid's rho (eq. 5), and the noise level sigma / alpha
    # where a karras or logsnr grid starts. None: the process's own (rho 7, or EDM's diffusion.edm_rho; its top level)
    rho: float | None = None
    sigma_max: float | None = None
    variance: Variance | None = None  # DDPM: sigma_t^2 = beta or beta_tilde; None: the model's own
    clip: bool = True  # clamp the predicted x0 to [-1, 1] at every step
    guidance: float = 0.0  # classifier-free guidance weight w: eps~ = (1 + w) eps(c) - w eps(null)
    # The guidance interval (Kynkaanniemi et al. 2024): CFG only where the noise level sigma / alpha lies in
    # [guidance_sigma_min, guidance_sigma_max]; elsewhere the plain conditional network, in one B batch
    guidance_sigma_min: float = 0.0
    guidance_sigma_max: float = math.inf
    # Autoguidance (Karras et al. 2024, eq. 1): D~ = D_guide + w (D_main - D_guide) with w = guide_scale, where the
    # guide is a weaker model of the same task (a checkpoint path, or time-step:5min, the run's own earlier state);
    # w = 1 is the main model alone. The guidance interval limits it as it limits CFG.
    guide: str | None = None
    guide_scale: float = 1.0
    classifier_scale: float = 0.0  # classifier guidance s: eps^ = eps - s sqrt(1 - abar_t) grad log p(y | x_t)
    # Heun: Karras et al.'s stochastic sampler (Algorithm 2) when s_churn > 0: the noise of every point with
    # sigma / alpha in [s_tmin, s_tmax] is raised by gamma = min(s_churn / steps, sqrt(2) - 1), with noise * s_noise
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> "SamplerSettings":
        """The run config's `sampler` block (guidance there is the grids' CFG weight)."""
        return cls(name=_sampler_name(block["name"]), steps=block["steps"],
                   spacing=Spacing(block["spacing"]) if block["spacing"] is not None else None,
                   variance=Variance(block["variance"]) if block["variance"] is not None else None,
                   clip=bool(block["clip"]),
                   guide=str(block["guide"]) if block.get("guide") is not None else None,
                   **{k: float(block[k]) for k in FLOAT_SETTINGS if k in block},
                   **{k: float(block[k]) for k in GRID_SETTINGS if block.get(k) is not None})

    def override(self, **given: Any) -> "SamplerSettings":
        """A copy with the given settings; None means "not given". A new sampler name starts from that sampler's
        default steps and time grid (its registry entry) unless they are given too."""
        given = {k: v for k, v in given.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise GenlabError(f"unknown sampler setting {unknown[0]!r}; valid: "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}.")
        if "name" in given:
            given["name"] = _sampler_name(given["name"])
        for key in ("spacing", "variance"):
            if key in given:
                given[key] = _choice(key, given[key])
        if "name" in given and given["name"] != self.name:  # a new sampler starts from its own defaults
            entry = sampler_entry(given["name"])
            given.setdefault("steps", entry.default_steps)
            for key in ("spacing", *GRID_SETTINGS):  # its own grid, unshaped
                given.setdefault(key, None)
            defaults = SamplerSettings()  # another sampler's knobs do not carry over
            for key in OPTIONAL_SETTINGS:
                if key not in entry.reads:
                    given.setdefault(key, getattr(defaults, key))
        if given.get("spacing") is not None:  # a new grid drops a base's shape that it cannot take
            for key, grids in GRID_SHAPES.items():
                if given["spacing"] not in grids:
                    given.setdefault(key, None)
        for key in (*FLOAT_SETTINGS, *GRID_SETTINGS):
            if given.get(key) is not None:
                given[key] = _number(key, given[key])
        if "guide" in given:
            given["guide"] = str(given["guide"])
        return dataclasses.replace(self, **given)

    def check(self, num_timesteps: int | None, prefix: str = "", discrete: bool = True) -> "SamplerSettings":
        """Raise a GenlabError naming the key when a setting cannot work with a model of T = num_timesteps; None
        checks what needs no model (a table spec before its checkpoints load): steps then has only its lower bound.
        `discrete`: the model's process has the discrete abar table that DDPM and DDIM step on."""
        T, entry = num_timesteps, self.entry
        if entry.discrete and not discrete:
            others = ", ".join(n for n, e in SAMPLERS.items() if not e.discrete)
            key = "sampler.name" if prefix == "sampler." else f"{prefix}sampler"  # the run config's block names it
            raise GenlabError(f"{key}={self.name} steps on a VP model's discrete timesteps; this model's process "
                              f"has none (a flow model): use one of {others}.")
        low = entry.min_steps  # e.g. a respaced DDPM needs a first and a last step
        if self.steps is not None and T is None and (isinstance(self.steps, bool) or self.steps < low):
            raise GenlabError(f"{prefix}steps={self.steps} is out of range: sampler={self.name} needs at least {low}.")
        if self.steps is not None and T is not None and (isinstance(self.steps, bool) or not low <= self.steps <= T):
            raise GenlabError(f"{prefix}steps={self.steps} must lie in [{low}, T = {T}] for sampler={self.name}; "
                              f"{self.steps} is out of range (steps counts network evaluations; null: all T).")
        if not math.isfinite(self.eta) or self.eta < 0:
            raise GenlabError(f"{prefix}eta={self.eta} is out of range: it must be a finite number >= 0.")
        for key in ("guidance", "guide_scale", "classifier_scale"):
            if not math.isfinite(getattr(self, key)):
                raise GenlabError(f"{prefix}{key}={getattr(self, key)} must be a finite number.")
        self.check_guide(prefix)
        if self.spacing is not None and self.spacing not in entry.grids:
            raise GenlabError(f"{prefix}spacing={self.spacing} does not apply to sampler={self.name}: use one of "
                              f"{', '.join(entry.grids)}.")
        if self.eta != 0 and "eta" not in entry.reads:
            readers = "|".join(n for n, e in SAMPLERS.items() if "eta" in e.reads)
            raise GenlabError(f"{prefix}eta={self.eta} applies to sampler={readers} only; sampler={self.name} does "
                              "not read it.")
        self.check_churn(prefix)
        self.check_grid_shape(prefix)
        lo, hi = self.guidance_sigma_min, self.guidance_sigma_max
        if not (0 <= lo <= hi) or math.isnan(hi):
            raise GenlabError(f"{prefix}guidance_sigma_min={lo}, guidance_sigma_max={hi}: need 0 <= min <= max (the "
                              "noise levels sigma / alpha where CFG applies; max may be inf).")
        return self

    def check_guide(self, prefix: str = "") -> None:
        """Autoguidance needs a guide, and is not combined with CFG (Karras et al. 2024 use one or the other)."""
        if self.guide_scale != 1 and self.guide is None:
            raise GenlabError(f"{prefix}guide_scale={self.guide_scale:g} needs guide=PATH, the weaker model that guides "
                              "(a checkpoint of the same data and objective, or time-step:5min, the run's own state "
                              "after 5 minutes).")
        if self.guide is not None and not self.guide.strip():
            raise GenlabError(f"{prefix}guide= is empty: give a checkpoint path or time-step:<minutes>min.")
        if self.autoguided and self.guidance != 0:
            raise GenlabError(f"{prefix}guidance={self.guidance:g} and guide_scale={self.guide_scale:g}: use CFG or "
                              "autoguidance, not both (set guidance=0 or guide_scale=1).")

    def check_grid_shape(self, prefix: str = "") -> None:
        """rho shapes the karras grid and sigma_max a karras or logsnr one; each a finite number > 0."""
        for key in GRID_SETTINGS:
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise GenlabError(f"{prefix}{key}={value} is out of range: it must be a finite number > 0.")
        for key, grids in GRID_SHAPES.items():
            value = getattr(self, key)
            if value is not None and self.grid not in grids:
                spacings = " or ".join(f"spacing={grid}" for grid in grids)
                raise GenlabError(f"{prefix}{key}={value:g} {_SHAPE_ROLES[key]}; sampler={self.name} is on the "
                                  f"{self.grid} grid here: add {spacings}, or drop {key}.")

    def check_noise_range(self, noise_range: tuple[float, float], prefix: str = "") -> None:
        """sigma_max inside the model's noise levels (low, high] (its schedule's noise_range): above them the
        network would be asked about noise it never saw."""
        low, high = noise_range
        if self.sigma_max is not None and not low < self.sigma_max <= high:
            raise GenlabError(f"{prefix}sigma_max={self.sigma_max:g} is outside this model's noise levels: give a "
                              f"value above {low:.4g} and at most {high:.4g} (its grids' top, sigma / alpha).")

    @property
    def autoguided(self) -> bool:
        """Whether a guide network steers sampling (a guide, at a scale other than 1)."""
        return self.guide is not None and self.guide_scale != 1

    @property
    def guided(self) -> bool:
        """Whether a second network output is mixed in at some step: CFG's unconditional one, or the guide's."""
        return self.guidance != 0 or self.autoguided

    @property
    def guidance_interval(self) -> bool:
        """Whether CFG is limited to a range of noise levels (either end of the interval set)."""
        return self.guidance_sigma_min > 0 or math.isfinite(self.guidance_sigma_max)

    def guided_at(self, sigma: float) -> bool:
        """Whether CFG or autoguidance applies at noise level sigma / alpha: inside the guidance interval, with a
        weight."""
        return self.guided and self.guidance_sigma_min <= sigma <= self.guidance_sigma_max

    def check_churn(self, prefix: str = "") -> None:
        """The ranges of Algorithm 2's settings; s_churn > 0 only for a sampler that reads it."""
        if not (math.isfinite(self.s_churn) and self.s_churn >= 0):
            raise GenlabError(f"{prefix}s_churn={self.s_churn} is out of range: it must be a finite number >= 0.")
        if not (0 <= self.s_tmin <= self.s_tmax) or math.isnan(self.s_tmax):
            raise GenlabError(f"{prefix}s_tmin={self.s_tmin}, s_tmax={self.s_tmax}: need 0 <= s_tmin <= s_tmax.")
        if not (math.isfinite(self.s_noise) and self.s_noise > 0):
            raise GenlabError(f"{prefix}s_noise={self.s_noise} is out of range: it must be a finite number > 0.")
        if self.s_churn != 0 and "s_churn" not in self.entry.reads:
            readers = "|".join(n for n, e in SAMPLERS.items() if "s_churn" in e.reads)
            raise GenlabError(f"{prefix}s_churn={self.s_churn} applies to sampler={readers} only (Karras et al.'s "
                              f"Algorithm 2); sampler={self.name} does not read it.")

    @property
    def entry(self) -> SamplerEntry:
        """The registry entry of this sampler: everything known about it."""
        return sampler_entry(self.name)

    @property
    def grid(self) -> Spacing:
        """The time grid used: `spacing`, or the sampler's default."""
        return self.spacing if self.spacing is not None else self.entry.default_grid

    @property
    def deterministic(self) -> bool:
        """The samples depend on x_T only (the same x_T decodes alike at any step count)."""
        return self.entry.deterministic(self)

    def check_applies(self, given: Mapping[str, Any], prefix: str = "") -> None:
        """Refuse settings given for a sampler that does not read them (eta for DDPM, variance for DDIM)."""
        for key in OPTIONAL_SETTINGS:
            if given.get(key) is not None and key not in self.entry.reads:
                readers = "|".join(n for n, e in SAMPLERS.items() if key in e.reads)
                raise GenlabError(f"{prefix}{key}= applies to sampler={readers}, not to sampler={self.name}"
                                  + (" (DDIM's noise is set by eta)." if key == "variance" else "."))

    def nfe(self, num_timesteps: int) -> int:
        """The solver's evaluations of the network per sample (heun's steps = S is 2S - 1). CFG's unconditional pass
        and a guide's evaluations come on top: `generate` counts them (NetworkCalls), and records report that count
        as "nfe". Classifier-guidance gradients are not counted."""
        return self.entry.nfe(self.steps if self.steps is not None else num_timesteps)

    def with_nfe(self, nfe: int) -> "SamplerSettings":
        """The same sampler with the most steps whose network evaluations do not exceed `nfe` (heun: odd NFE only)."""
        if isinstance(nfe, bool) or nfe < 1:
            raise GenlabError(f"nfe={nfe} is out of range: it must be a positive number of network evaluations.")
        return dataclasses.replace(self, steps=self.entry.steps_for_nfe(nfe))

    def describe(self, num_timesteps: int, model_variance: str = "beta_tilde",
                 evaluations: float | None = None) -> dict[str, Any]:
        """The settings as used, for JSON records: steps resolved, only the keys this sampler reads. "nfe" is
        `evaluations`, the network evaluations per sample that sampling counted (guidance included), when given;
        "solver_nfe" the solver's own (SamplerSettings.nfe), which is "nfe" when no count is given."""
        reads = self.entry.reads
        out: dict[str, Any] = {"name": str(self.name), "steps": self.nfe(num_timesteps),
                               "eta": self.eta if "eta" in reads else None,
                               "spacing": str(self.grid), "guidance": self.guidance}
        out.update({key: getattr(self, key) for key in GRID_SETTINGS if getattr(self, key) is not None})
        if self.guide is not None:
            out.update(guide=self.guide, guide_scale=self.guide_scale)
        if self.guided and self.guidance_interval:
            out["guidance_interval"] = [self.guidance_sigma_min, self.guidance_sigma_max]
        if "variance" in reads:
            out["variance"] = str(self.variance or model_variance)
        if self.classifier_scale:
            out["classifier_scale"] = self.classifier_scale
        if self.s_churn:
            out.update(s_churn=self.s_churn, s_tmin=self.s_tmin, s_tmax=self.s_tmax, s_noise=self.s_noise)
        out["nfe"] = self.nfe(num_timesteps)
        if evaluations is not None:  # what sampling counted: CFG's null pass and a guide's forwards on top
            counted = int(evaluations) if float(evaluations).is_integer() else round(evaluations, 3)
            out.update(nfe=counted, solver_nfe=self.nfe(num_timesteps))
        return out

    def label(self, num_timesteps: int) -> str:
        """A short description for logs, e.g. "dpmpp_2m, 10 steps on the logsnr grid, 10 NFE"."""
        steps = self.steps if self.steps is not None else num_timesteps
        extra = f", eta {self.eta:g}" if "eta" in self.entry.reads else ""
        extra += f", rho {self.rho:g}" if self.rho is not None else ""
        extra += f", from sigma {self.sigma_max:g}" if self.sigma_max is not None else ""
        extra += f", churn {self.s_churn:g}" if self.s_churn else ""
        extra += f", autoguidance w={self.guide_scale:g} by {self.guide}" if self.autoguided else ""
        nfe = f"{self.nfe(num_timesteps)} NFE"
        if self.guided:  # the second network's evaluations come on top at each guided step
            nfe += f" (+1 per guided step for the {'guide' if self.autoguided else 'unconditional pass'})"
        return f"{self.name}, {steps} steps on the {self.grid} grid{extra}, {nfe}"


def resolve_settings(base: SamplerSettings, given: Mapping[str, Any], num_timesteps: int | None = None,
                     prefix: str = "", discrete: bool = True) -> SamplerSettings:
    """The one default policy: what `given` (SAMPLER_FIELDS; None: not given) leaves out is `base`, the checkpoint's
    own sampler block; a newly named sampler starts from its own defaults. Checked against T (None: what needs no
    model), and settings its sampler does not read are refused."""
    given = {("name" if k == "sampler" else k): v for k, v in given.items() if v is not None}
    try:
        settings = base.override(**given)
    except GenlabError as exc:  # an invalid choice, named where it was given
        raise GenlabError(f"{prefix}{exc}") from None
    settings.check_applies(given, prefix)
    return settings.check(num_timesteps, prefix, discrete)


def _sampler_name(value: Any) -> str:
    name = str(value)
    if name not in SAMPLERS:
        raise GenlabError(f"sampler={name} is not a valid choice: use one of {', '.join(SAMPLERS)}.")
    return name


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise GenlabError(f"{key}={value} is not a number: give one such as 1.5.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise GenlabError(f"{key}={value!r} is not a number: give one such as 1.5.") from None


def _choice(key: str, value: Any) -> StrEnum:
    kind = {"spacing": Spacing, "variance": Variance}[key]
    try:
        return kind(str(value))
    except ValueError:
        raise GenlabError(f"{key}={value} is not a valid choice: use one of {', '.join(kind)}.") from None
