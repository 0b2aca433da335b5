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


def test_autoguidance_is_karras_eq_1_and_w_1_is_the_main_model() -> None:
    """D~ = D_guide + w (D_main - D_guide) (Karras et al. 2024, eq. 1): w = 1 is the main model exactly (the guide is
    not even run), w = 0 the guide, and w > 1 extrapolates away from the guide."""
    from genlab.diffusion import autoguidance, autoguide_combine

    x, t = torch.randn(3, 1, 4, 4), torch.tensor([5, 50, 500])
    guide_calls: list[int] = []

    def main(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.3 * x + 0.001 * t.view(-1, 1, 1, 1)

    def guide(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        guide_calls.append(x.shape[0])
        return 0.1 * x

    assert torch.equal(autoguidance(main, guide, 1.0)(x, t), main(x, t)) and guide_calls == []
    torch.testing.assert_close(autoguidance(main, guide, 0.0)(x, t), guide(x, t))
    torch.testing.assert_close(autoguidance(main, guide, 2.5)(x, t), guide(x, t) + 2.5 * (main(x, t) - guide(x, t)))
    torch.testing.assert_close(autoguide_combine(main(x, t), guide(x, t), 2.5), 2.5 * main(x, t) - 1.5 * guide(x, t))
    guide_calls.clear()
    assert torch.equal(autoguidance(main, guide, 2.5, guided_at=lambda t: False)(x, t), main(x, t))
    assert guide_calls == []  # outside the guidance interval only the main network runs


@pytest.mark.parametrize("process", ["vp", "flow", "edm"])
def test_network_evaluations_are_counted_with_every_kind_of_guidance(process: str) -> None:
    """NetworkCalls counts what sampling costs per sample: the solver's steps, CFG's 2B batches as 2, a guide's
    forwards, and only the guided steps inside a guidance interval; autoguidance works for an unconditional model."""
    from genlab.diffusion import NetworkCalls, SamplerSettings, Steering, generate

    diffusion = interval_denoisers()[process]

    def main(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 0.3 * x + (0.0 if y is None else 0.1 * (y.view(-1, 1, 1, 1).float() - 4.5))

    def guide(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return 0.2 * x

    base = SamplerSettings(name="dpmpp_2m", steps=6, clip=False)

    def draw(settings: SamplerSettings, steering: Steering) -> tuple[torch.Tensor, NetworkCalls]:
        calls = NetworkCalls()
        images = generate(diffusion, main, 5, (1, 4, 4), settings.check(1000), steering=steering, seed=0,
                          batch_size=2, calls=calls)
        return images, calls

    unconditional = Steering(guide_net=guide)
    plain, calls = draw(base, unconditional)
    assert calls.per_sample == 6 == base.nfe(1000) and calls.guide_evaluations == 0 and calls.samples == 5
    guided = base.override(guide="guide.ckpt", guide_scale=2.0)
    auto, calls = draw(guided, unconditional)
    assert calls.per_sample == 12 and calls.guide_evaluations == 30 and (auto - plain).abs().max() > 1e-4
    same, calls = draw(base.override(guide="guide.ckpt", guide_scale=1.0), unconditional)
    assert torch.equal(same, plain) and calls.per_sample == 6  # w = 1: the main model, the guide never runs
    _, calls = draw(guided.override(guidance_sigma_min=0.3, guidance_sigma_max=5.0), unconditional)
    assert 6 < calls.per_sample < 12 and calls.guide_evaluations == 5 * (calls.per_sample - 6)
    nowhere, calls = draw(guided.override(guidance_sigma_min=1e8, guidance_sigma_max=1e9), unconditional)
    assert torch.equal(nowhere, plain) and calls.per_sample == 6
    conditional = Steering(labels=torch.tensor([1, 7, 3, 0, 2]), null_class=10)
    _, calls = draw(base.override(guidance=2.0), conditional)
    assert calls.per_sample == 12 and calls.guide_evaluations == 0  # each CFG step: a conditional and a null pass
    steered = Steering(labels=torch.tensor([1, 7, 3, 0, 2]), null_class=10, guide_net=guide)
    _, calls = draw(guided, steered)
    assert calls.per_sample == 12 and calls.guide_evaluations == 30


def test_autoguidance_settings_are_checked_and_recorded() -> None:
    from genlab.diffusion import SamplerSettings
    from genlab.errors import GenlabError

    settings = SamplerSettings(name="dpmpp_2m", steps=10).override(guide="runs/x/checkpoints/time-step0000500.ckpt",
                                                                   guide_scale=1.8)
    record = settings.check(1000).describe(1000, evaluations=20.0)
    assert record["guide_scale"] == 1.8 and record["nfe"] == 20.0 and record["solver_nfe"] == 10
    assert "autoguidance w=1.8" in settings.label(1000) and "10 NFE (+1 per guided step for the guide)" in settings.label(1000)
    with pytest.raises(GenlabError, match="guide_scale=2 needs guide=PATH"):
        SamplerSettings().override(guide_scale=2.0).check(1000)
    with pytest.raises(GenlabError, match="use CFG or autoguidance, not both"):
        settings.override(guidance=1.0).check(1000)
    with pytest.raises(GenlabError, match="guide_scale=inf must be a finite number"):
        settings.override(guide_scale=float("inf")).check(1000)
