"""Classifier-free guidance: the formula, the batched wrapper and the two conventions."""

from __future__ import annotations

import pytest
import torch

from genlab.diffusion import GaussianDiffusion, classifier_free_guidance, ddim_sample, guidance_weight, linear_betas

NULL = 10


def toy_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A fixed conditional eps-model: depends on x, t and the label (the null label included)."""
    return 0.1 * x + 0.01 * t.view(-1, 1, 1, 1) + 0.05 * y.view(-1, 1, 1, 1).float()


def test_cfg_matches_the_formula() -> None:
    x, t, y = torch.randn(3, 1, 4, 4), torch.tensor([5, 50, 500]), torch.tensor([1, 2, 3])
    w = 2.5
    guided = classifier_free_guidance(toy_eps, w, NULL)(x, t, y=y)
    expected = (1 + w) * toy_eps(x, t, y) - w * toy_eps(x, t, torch.full_like(y, NULL))
    torch.testing.assert_close(guided, expected)


def test_cond_and_uncond_run_as_one_batched_forward() -> None:
    calls: list[int] = []

    def counting(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        assert torch.equal(y[3:], torch.full((3,), NULL))  # second half is the null label
        return toy_eps(x, t, y)

    classifier_free_guidance(counting, 1.0, NULL)(torch.randn(3, 1, 4, 4), torch.tensor([1, 2, 3]), y=torch.tensor([0, 1, 2]))
    assert calls == [6]


def test_w_zero_is_exactly_the_conditional_sample() -> None:
    diffusion = GaussianDiffusion(linear_betas(20))
    x_T = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 5, 9])
    plain = ddim_sample(diffusion, toy_eps, x_T.shape, steps=5, x_T=x_T, model_kwargs={"y": y})
    guided = ddim_sample(
        diffusion, classifier_free_guidance(toy_eps, 0.0, NULL), x_T.shape, steps=5, x_T=x_T, model_kwargs={"y": y}
    )
    assert torch.equal(plain, guided)
    stronger = ddim_sample(
        diffusion, classifier_free_guidance(toy_eps, 3.0, NULL), x_T.shape, steps=5, x_T=x_T, model_kwargs={"y": y}
    )
    assert not torch.allclose(plain, stronger)


def test_two_conventions_are_the_same_guidance() -> None:
    assert guidance_weight(guidance=3.0) == 3.0
    assert guidance_weight(guidance_scale=4.0) == 3.0  # s = 1 + w
    assert guidance_weight() == 0.0
    with pytest.raises(ValueError, match="not both"):
        guidance_weight(guidance=1.0, guidance_scale=2.0)


def interval_denoisers() -> dict[str, object]:
    from genlab.diffusion import EDM, FlowMatching, make_betas

    return {"vp": GaussianDiffusion(make_betas("linear", 1000)), "flow": FlowMatching(1000), "edm": EDM(1000)}


@pytest.mark.parametrize("process", ["vp", "flow", "edm"])
def test_the_guidance_interval_is_cfg_inside_and_the_conditional_model_outside(process: str) -> None:
    """Kynkaanniemi et al. 2024: CFG only where sigma / alpha lies in the interval. An interval holding every step
    is plain CFG exactly, one holding none the unguided conditional model exactly (and only B-sample forwards)."""
    from genlab.diffusion import SamplerSettings, Steering, generate

    diffusion = interval_denoisers()[process]
    batches: list[int] = []

    def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # a toy conditional network
        batches.append(x.shape[0])
        return 0.3 * x + 0.1 * (y.view(-1, 1, 1, 1).float() - 4.5)

    sampler = "dpmpp_2m"
    base = SamplerSettings(name=sampler, steps=6, clip=False)
    steering = Steering(labels=torch.tensor([1, 7, 3]), null_class=10)

    def draw(**settings: float) -> torch.Tensor:
        batches.clear()
        return generate(diffusion, net, 3, (1, 4, 4), base.override(**settings), steering=steering, seed=0)

    plain = draw(guidance=0.0)
    cfg = draw(guidance=2.0)
    assert set(batches) == {6}  # 2B every step
    everywhere = draw(guidance=2.0, guidance_sigma_min=1e-9, guidance_sigma_max=1e9)
    nowhere = draw(guidance=2.0, guidance_sigma_min=1e8, guidance_sigma_max=1e9)
    assert set(batches) == {3}  # outside the interval: the conditional network alone, B samples
    torch.testing.assert_close(everywhere, cfg, rtol=0, atol=0)
    torch.testing.assert_close(nowhere, plain, rtol=0, atol=0)
    middle = draw(guidance=2.0, guidance_sigma_min=0.3, guidance_sigma_max=5.0)
    assert set(batches) == {3, 6}  # guided at the middle noise levels only
    assert (middle - cfg).abs().max() > 1e-4 and (middle - plain).abs().max() > 1e-4


def test_the_guidance_interval_is_checked_and_recorded() -> None:
    from genlab.diffusion import SamplerSettings
    from genlab.errors import GenlabError

    settings = SamplerSettings(name="ddim", guidance=1.0).override(guidance_sigma_min=0.28, guidance_sigma_max=5.42)
    assert settings.guided_at(1.0) and not settings.guided_at(0.1) and not settings.guided_at(6.0)
    assert settings.describe(1000)["guidance_interval"] == [0.28, 5.42]
    assert "guidance_interval" not in SamplerSettings(name="ddim", guidance=1.0).describe(1000)
    with pytest.raises(GenlabError, match="guidance_sigma_min=5.0, guidance_sigma_max=1.0: need 0 <= min <= max"):
        settings.override(guidance_sigma_min=5.0, guidance_sigma_max=1.0).check(1000)
