"""SamplerSettings: one description of a sampler, checked against T; every caller goes through it."""

from __future__ import annotations

import math

import pytest

from genlab.diffusion import SamplerSettings, resolve_settings, sampler_entry
from genlab.errors import GenlabError


def test_defaults_are_ddim_50_deterministic_with_clipping() -> None:
    s = SamplerSettings()
    assert (s.name, s.steps, s.eta, s.grid, s.clip, s.guidance, s.classifier_scale) == (
        "ddim", 50, 0.0, "uniform", True, 0.0, 0.0)
    assert s.spacing is None  # the sampler's own grid


def test_override_ignores_none_and_a_new_sampler_takes_its_own_default_steps() -> None:
    s = SamplerSettings(steps=20)
    assert s.override(eta=None, steps=None) == s
    assert s.override(name="ddpm").steps == sampler_entry("ddpm").default_steps is None  # all T
    assert s.override(name="ddpm", steps=7).steps == 7
    assert s.override(name="ddim").steps == 20  # same sampler: keeps its steps
    assert s.override(spacing="quadratic").spacing == "quadratic"


def test_override_rejects_unknown_keys_and_choices() -> None:
    with pytest.raises(GenlabError, match="unknown sampler setting 'stepz'"):
        SamplerSettings().override(stepz=3)
    with pytest.raises(GenlabError, match="sampler=euler_a is not a valid choice: use one of"):
        SamplerSettings().override(name="euler_a")


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, r"steps=0 must lie in \[1, T = 10\]"),
    ({"steps": 11}, r"steps=11 must lie in \[1, T = 10\]"),
    ({"name": "ddpm", "steps": 1}, r"steps=1 must lie in \[2, T = 10\] for sampler=ddpm"),
    ({"steps": 5, "eta": -0.5}, r"eta=-0.5 is out of range"),
    ({"steps": 5, "eta": math.nan}, r"eta=nan is out of range"),
    ({"steps": 5, "guidance": math.inf}, r"guidance=inf must be a finite number"),
    ({"steps": 5, "classifier_scale": -math.inf}, r"classifier_scale=-inf must be a finite number"),
])
def test_check_names_the_setting(kwargs: dict, match: str) -> None:
    with pytest.raises(GenlabError, match=match):
        SamplerSettings(**kwargs).check(10)


def test_check_accepts_the_edges_and_all_steps() -> None:
    SamplerSettings(steps=1).check(10)
    SamplerSettings(steps=10).check(10)
    SamplerSettings(name="ddpm", steps=None).check(10)


def test_nfe_and_description() -> None:
    assert SamplerSettings(steps=None).nfe(1000) == 1000 and SamplerSettings(steps=20).nfe(1000) == 20
    d = SamplerSettings(name="ddpm", steps=None).describe(1000, "beta")
    assert d == {"name": "ddpm", "steps": 1000, "eta": None, "spacing": "uniform", "guidance": 0.0,
                 "variance": "beta", "nfe": 1000}


def test_settings_that_another_sampler_reads_are_refused() -> None:
    with pytest.raises(GenlabError, match="eta= applies to sampler=ddim, not to sampler=ddpm"):
        SamplerSettings(name="ddpm").check_applies({"eta": 0.5})
    with pytest.raises(GenlabError, match="variance= applies to sampler=ddpm"):
        SamplerSettings().check_applies({"variance": "beta"})
    SamplerSettings().check_applies({"eta": 0.5, "variance": None})


def test_one_default_policy_what_is_not_given_is_the_checkpoints() -> None:
    block = SamplerSettings(name="dpmpp_2m", steps=20, clip=False, guidance=1.5)  # e.g. ddpm_mnist_20min's block
    assert resolve_settings(block, {"sampler": None, "steps": None}) == block
    assert resolve_settings(block, {"steps": 10}) == SamplerSettings(name="dpmpp_2m", steps=10, clip=False,
                                                                     guidance=1.5)
    ddim = resolve_settings(block, {"sampler": "ddim", "eta": 0.5})  # a newly named sampler: its own defaults
    assert (ddim.name, ddim.steps, ddim.eta, ddim.grid, ddim.clip) == ("ddim", 50, 0.5, "uniform", False)
    back = resolve_settings(ddim, {"sampler": "heun"})  # DDIM's eta does not carry over to a sampler without one
    assert (back.name, back.steps, back.eta, back.grid) == ("heun", 18, 0.0, "karras")
    with pytest.raises(GenlabError, match="eta= applies to sampler=ddim, not to sampler=dpmpp_2m"):
        resolve_settings(block, {"eta": 0.0})
    with pytest.raises(GenlabError, match="steps=30 must lie in"):
        resolve_settings(block, {"steps": 30}, num_timesteps=25)


def test_the_grid_shape_belongs_to_its_grid() -> None:
    """rho and sigma_max reach the record and the label, and leave with the grid they shape: a newly named sampler
    starts on its own grid unshaped, and a new spacing drops what it cannot take."""
    heun = resolve_settings(SamplerSettings(), {"sampler": "heun", "steps": 3, "rho": 2, "sigma_max": "30"}, 1000)
    assert (heun.rho, heun.sigma_max) == (2.0, 30.0)
    assert heun.label(1000) == "heun, 3 steps on the karras grid, rho 2, from sigma 30, 5 NFE"
    assert heun.describe(1000)["rho"] == 2.0 and heun.describe(1000)["sigma_max"] == 30.0
    assert "rho" not in SamplerSettings(name="heun").describe(1000)  # unshaped records are as before
    assert resolve_settings(heun, {"sampler": "unipc"}).rho is None  # its own grid (uniform), unshaped
    logsnr = resolve_settings(heun, {"spacing": "logsnr"})
    assert (logsnr.rho, logsnr.sigma_max) == (None, 30.0)  # rho shapes karras only; sigma_max starts logsnr too
    uniform = resolve_settings(heun, {"spacing": "uniform"})
    assert (uniform.rho, uniform.sigma_max) == (None, None)


@pytest.mark.parametrize("given, match", [
    ({"sampler": "heun", "rho": 0}, r"rho=0.0 is out of range: it must be a finite number > 0"),
    ({"sampler": "heun", "sigma_max": -1}, r"sigma_max=-1.0 is out of range"),
    ({"sampler": "heun", "rho": math.nan}, r"rho=nan is out of range"),
    ({"sampler": "heun", "rho": "two"}, r"rho='two' is not a number"),
    ({"sampler": "heun", "sigma_max": True}, r"sigma_max=True is not a number"),
    ({"sampler": "dpmpp_2m", "rho": 2}, r"rho=2 shapes the karras grid .* on the uniform grid here: add "
                                        r"spacing=karras"),
    ({"sampler": "heun", "spacing": "logsnr", "rho": 2}, r"on the logsnr grid here"),
    ({"sampler": "ddim", "sigma_max": 30}, r"sigma_max=30 sets where a karras or logsnr grid starts"),
    ({"sampler": "heun", "spacing": "uniform", "sigma_max": 30}, r"sampler=heun is on the uniform grid"),
])
def test_a_grid_shape_that_cannot_apply_names_itself(given: dict, match: str) -> None:
    with pytest.raises(GenlabError, match=match):
        resolve_settings(SamplerSettings(), given, 1000, discrete=True)


def test_sigma_max_must_lie_in_the_models_noise_levels() -> None:
    settings = SamplerSettings(name="heun", sigma_max=80.0)
    settings.check_noise_range((0.002, 80.0))  # the top itself is the model's own grid
    for value in (80.5, 0.002):
        with pytest.raises(GenlabError, match=f"row 2: sigma_max={value:g} is outside this model's noise levels: "
                                              r"give a value above 0.002 and at most 80"):
            SamplerSettings(name="heun", sigma_max=value).check_noise_range((0.002, 80.0), "row 2: ")
