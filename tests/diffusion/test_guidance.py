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
