"""Respaced DDPM: the shorter chain's betas in closed form, and its samplers against DDIM and full DDPM."""

from __future__ import annotations

import pytest
import torch

from genlab.diffusion import GaussianDiffusion, ddim_sample, ddim_timesteps, ddpm_sample, linear_betas
from genlab.diffusion.respace import respace, respaced_betas


def fake_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A smooth stand-in for the network that depends on t, so timestep mix-ups change the result."""
    return torch.tanh(x) * (0.5 + t.float().view(-1, 1, 1, 1) / 100.0)


def test_respaced_betas_keep_abar_at_the_kept_timesteps() -> None:
    diffusion = GaussianDiffusion(linear_betas(100))
    process, timesteps = respace(diffusion, 10)
    assert timesteps.tolist() == sorted(ddim_timesteps(100, 10))
    torch.testing.assert_close(process.alphas_cumprod, diffusion.alphas_cumprod[timesteps], rtol=1e-6, atol=0)
    # first step: tau_0 = 0, so beta'_0 = beta_0; later steps: 1 - abar_{tau_i} / abar_{tau_{i-1}}
    abar = diffusion.alphas_cumprod.double()
    assert process.betas[0].item() == pytest.approx(diffusion.betas[0].item(), rel=1e-6)
    i, j = timesteps[3].item(), timesteps[2].item()
    assert process.betas[3].item() == pytest.approx(1 - (abar[i] / abar[j]).item(), rel=1e-6)


def test_all_steps_give_back_the_original_betas() -> None:
    betas = linear_betas(50)
    torch.testing.assert_close(respaced_betas(torch.cumprod(1 - betas.double(), 0), list(range(50))),
                               betas.double(), rtol=1e-9, atol=1e-12)


def test_respacing_keeps_or_overrides_the_variance() -> None:
    diffusion = GaussianDiffusion(linear_betas(100), variance="beta")
    assert respace(diffusion, 10)[0].variance == "beta"
    assert respace(diffusion, 10, variance="beta_tilde")[0].variance == "beta_tilde"
    with pytest.raises(ValueError, match="at least 2 steps"):
        respace(diffusion, 1)


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("steps", [5, 20])
def test_respaced_ddpm_with_beta_tilde_is_ddim_eta_1(clip: bool, steps: int) -> None:
    # Both draw x_T and then one noise tensor per step but the last, in the same order: the same numbers.
    diffusion = GaussianDiffusion(linear_betas(100))
    shape = (3, 1, 4, 4)
    ddpm = ddpm_sample(diffusion, fake_eps, shape, steps=steps, variance="beta_tilde", clip_denoised=clip,
                       generator=torch.Generator().manual_seed(1))
    ddim = ddim_sample(diffusion, fake_eps, shape, steps=steps, eta=1.0, clip_denoised=clip,
                       generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ddpm, ddim, rtol=0, atol=1e-4)


def test_sigma_hat_is_the_respaced_beta() -> None:
    # DDIM Table 1's sigma-hat row: sigma^2 = beta' of the respaced chain, larger than beta_tilde' (eta = 1).
    diffusion = GaussianDiffusion(linear_betas(1000))
    beta_process, _ = respace(diffusion, 10, variance="beta")
    tilde_process, _ = respace(diffusion, 10, variance="beta_tilde")
    torch.testing.assert_close(beta_process.model_variance[1:], beta_process.betas[1:])
    abar = tilde_process.alphas_cumprod.double()
    eta1 = (1 - abar[:-1]) / (1 - abar[1:]) * (1 - abar[1:] / abar[:-1])  # DDIM eq. 16 with eta = 1
    torch.testing.assert_close(tilde_process.model_variance[1:].double(), eta1, rtol=1e-3, atol=0)  # float32 buffers
    assert bool((beta_process.model_variance[1:] > tilde_process.model_variance[1:]).all())


def test_full_length_ddpm_is_unchanged_and_the_network_sees_original_timesteps() -> None:
    diffusion = GaussianDiffusion(linear_betas(100))
    seen: list[int] = []

    def recording(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(int(t[0]))
        return fake_eps(x, t)

    full = ddpm_sample(diffusion, fake_eps, (2, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    same = ddpm_sample(diffusion, fake_eps, (2, 1, 4, 4), steps=100, generator=torch.Generator().manual_seed(3))
    assert torch.equal(full, same)
    ddpm_sample(diffusion, recording, (2, 1, 4, 4), steps=4, generator=torch.Generator().manual_seed(3))
    assert seen == ddim_timesteps(100, 4)  # 99, 66, 33, 0
