"""generate(): every sampler through SamplerSettings, with classifier-free and classifier guidance."""

from __future__ import annotations

import pytest
import torch

from genlab.diffusion import GaussianDiffusion, SamplerSettings, Steering, generate, linear_betas

T = 100
SAMPLERS = ["ddim", "ddpm", "dpmpp_2m", "unipc", "heun", "euler"]


def fake_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """A pure function of (x, t, y) standing in for a class-conditional network (null class 3)."""
    scale = (t.to(x.dtype) + 1) / T
    shift = 0.0 if y is None else (y.to(x.dtype) - 1.5).view(-1, 1, 1, 1) * 0.2
    return torch.tanh(x) * scale.view(-1, 1, 1, 1) + shift


def log_prob(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A classifier's log p(y | x_t): class y prefers mean pixel value (y - 1) / 2."""
    return -((x.mean(dim=(1, 2, 3)) - (y.to(x.dtype) - 1) / 2) ** 2)


def run(settings: SamplerSettings, steering: Steering | None = None, batch_size: int = 3) -> torch.Tensor:
    diffusion = GaussianDiffusion(linear_betas(T))
    return generate(diffusion, fake_eps, 4, (1, 3, 3), settings.check(T), steering=steering, seed=0,
                    batch_size=batch_size)


@pytest.mark.parametrize("name", SAMPLERS)
def test_classifier_free_guidance_changes_samples_and_w0_is_the_conditional_model(name: str) -> None:
    labels = torch.tensor([0, 1, 2, 0])
    steer = Steering(labels=labels, null_class=3)
    base = SamplerSettings().override(name=name, steps=6)
    conditional = run(base, steer, batch_size=4)
    guided = run(base.override(guidance=2.0), steer, batch_size=4)
    assert torch.isfinite(guided).all() and not torch.allclose(guided, conditional, atol=1e-4)
    # w = 0 is one conditional pass: the same as calling the network with the labels directly
    direct = generate(GaussianDiffusion(linear_betas(T)), lambda x, t: fake_eps(x, t, labels), 4,
                      (1, 3, 3), base.check(T), seed=0, batch_size=4)
    assert torch.allclose(conditional, direct, atol=1e-6)


@pytest.mark.parametrize("name", SAMPLERS)
def test_classifier_guidance_changes_samples_and_s0_is_unguided(name: str) -> None:
    labels = torch.tensor([0, 1, 2, 0])
    steer = Steering(labels=labels, classifier_log_prob=log_prob)
    base = SamplerSettings().override(name=name, steps=6)
    unguided = run(base)
    assert torch.equal(run(base.override(classifier_scale=0.0), steer), unguided)
    guided = run(base.override(classifier_scale=5.0), steer)
    assert torch.isfinite(guided).all() and (guided - unguided).abs().max() > 1e-3


@pytest.mark.parametrize("name, steps, nfe", [("ddim", 7, 7), ("ddpm", 7, 7), ("dpmpp_2m", 7, 7), ("unipc", 7, 7),
                                              ("heun", 7, 13), ("euler", 7, 7)])
def test_network_evaluations_are_what_the_settings_say(name: str, steps: int, nfe: int) -> None:
    calls = []

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return fake_eps(x, t)

    settings = SamplerSettings().override(name=name, steps=steps).check(T)
    generate(GaussianDiffusion(linear_betas(T)), counted, 2, (1, 3, 3), settings, seed=0)
    assert len(calls) == nfe == settings.nfe(T) == settings.describe(T)["nfe"]


def test_solver_defaults_and_grids() -> None:
    s = SamplerSettings().override(name="dpmpp_2m")
    assert (s.steps, s.grid) == (20, "uniform")
    assert SamplerSettings().override(name="heun").grid == "karras"
    assert SamplerSettings(spacing="quadratic").override(name="unipc").grid == "uniform"  # a new sampler's own grid
    assert SamplerSettings(spacing="quadratic").override(name="heun").grid == "karras"
    assert SamplerSettings().override(name="euler", spacing="uniform").grid == "uniform"
    assert SamplerSettings().override(name="heun").with_nfe(10).steps == 5  # 9 NFE, the most within 10
    assert SamplerSettings().override(name="unipc").with_nfe(10).steps == 10
    assert SamplerSettings().override(name="euler").deterministic and not SamplerSettings(eta=1.0).deterministic
