"""GaussianDiffusion: posterior coefficients against closed forms, q_sample statistics, round trips, the loss."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from genlab.diffusion import GaussianDiffusion, linear_betas, make_betas

T = 1000


def _abar(betas: torch.Tensor, t: int) -> float:
    """alpha_bar_t as a Python product, independent of the class; alpha_bar_{-1} = 1."""
    out = 1.0
    for beta in betas[: t + 1].tolist():
        out *= 1.0 - beta
    return out


@pytest.fixture(scope="module", params=["linear", "cosine"])
def diffusion(request: pytest.FixtureRequest) -> GaussianDiffusion:
    return GaussianDiffusion(make_betas(request.param, T))


def test_posterior_variance_matches_closed_form(diffusion: GaussianDiffusion) -> None:
    betas = diffusion.betas.double()
    abar = torch.cumprod(1.0 - betas, 0)
    for t in [0, 1, 2, 10, 250, 500, 998, 999]:
        beta, a, a_prev = betas[t].item(), abar[t].item(), abar[t - 1].item() if t > 0 else 1.0
        expected = beta * (1.0 - a_prev) / (1.0 - a)  # beta_tilde_t, DDPM eq. 7
        assert diffusion.posterior_variance[t].item() == pytest.approx(expected, rel=1e-5, abs=1e-12)
        clipped = expected if t > 0 else betas[1].item() * (1.0 - abar[0].item()) / (1.0 - abar[1].item())
        assert diffusion.posterior_log_variance_clipped[t].item() == pytest.approx(math.log(clipped), abs=1e-5)
    assert diffusion.posterior_variance[0].item() == 0.0


def test_posterior_mean_matches_closed_form(diffusion: GaussianDiffusion) -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 1, 5, 100, 500, 900, 999])
    x0 = torch.rand(7, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(7, 3, 4, 4, generator=g, dtype=torch.float64)
    x_t = diffusion.q_sample(x0, t, eps)
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, t)
    for i, ti in enumerate(t.tolist()):
        beta = diffusion.betas[ti].item()
        a, a_prev = _abar(diffusion.betas.double(), ti), _abar(diffusion.betas.double(), ti - 1)
        c0 = math.sqrt(a_prev) * beta / (1.0 - a)
        ct = math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a)
        torch.testing.assert_close(mean[i], c0 * x0[i] + ct * x_t[i], rtol=1e-5, atol=1e-6)
        assert var[i].flatten()[0].item() == pytest.approx(beta * (1 - a_prev) / (1 - a), rel=1e-5, abs=1e-12)
    assert mean.shape == x0.shape and var.shape == log_var.shape == (7, 1, 1, 1)


def test_q_sample_statistics_within_standard_errors() -> None:
    diffusion = GaussianDiffusion(linear_betas(T))
    n = 200_000
    t = torch.tensor([0, 100, 500, 999])
    x0 = torch.full((4, n), 0.7)
    noise = torch.randn(4, n, generator=torch.Generator().manual_seed(1))
    x_t = diffusion.q_sample(x0, t, noise).double()
    for i, ti in enumerate(t.tolist()):
        a = _abar(diffusion.betas.double(), ti)
        var = 1.0 - a
        # 5 standard errors: of the mean sqrt(var / n), of the sample variance var sqrt(2 / (n - 1)).
        assert abs(x_t[i].mean().item() - math.sqrt(a) * 0.7) < 5 * math.sqrt(var / n)
        assert abs(x_t[i].var().item() - var) < 5 * var * math.sqrt(2 / (n - 1))


def test_round_trips_between_x0_and_eps(diffusion: GaussianDiffusion) -> None:
    g = torch.Generator().manual_seed(2)
    t = torch.arange(0, T, 7)
    x0 = torch.rand(len(t), 3, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(len(t), 3, 8, 8, generator=g)
    x_t = diffusion.q_sample(x0, t, eps)
    # float32 error in x0 grows like 1/sqrt(abar_t) (~160 at t = 999 linear), so the tight bound stops at t < 900.
    early = t < 900
    x0_back = diffusion.predict_x0_from_eps(x_t, t, eps)
    torch.testing.assert_close(x0_back[early], x0[early], atol=1e-4, rtol=0)
    torch.testing.assert_close(x0_back, x0, atol=1e-3, rtol=0)
    eps_back = diffusion.predict_eps_from_x0(x_t, t, x0)
    # eps error grows like 1/sqrt(1 - abar_t) instead, large only at t = 0 (~100): skip t = 0 for the tight bound.
    torch.testing.assert_close(eps_back[1:], eps[1:], atol=1e-4, rtol=0)


def test_extract_checks_t_and_follows_x_without_moving_buffers() -> None:
    diffusion = GaussianDiffusion(linear_betas(10))
    x = torch.zeros(3, 2, 5, dtype=torch.float64)
    out = diffusion.extract(diffusion.betas, torch.tensor([0, 4, 9]), x)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float64
    torch.testing.assert_close(out.flatten(), diffusion.betas[[0, 4, 9]].double())
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        diffusion.extract(diffusion.betas, torch.tensor([0, 4]), x)
    with pytest.raises(ValueError, match="integer"):
        diffusion.extract(diffusion.betas, torch.tensor([0.0, 4.0, 9.0]), x)
    # Meta tensors stand in for another device: the result goes there, the buffers stay on the CPU.
    x_meta = torch.empty(3, 2, device="meta")
    on_meta = diffusion.q_sample(x_meta, torch.tensor([1, 2, 3]), x_meta)
    assert on_meta.device.type == "meta" and diffusion.betas.device.type == "cpu"


def test_invalid_construction_raises() -> None:
    with pytest.raises(ValueError, match="beta_tilde, beta"):
        GaussianDiffusion(linear_betas(10), variance="learned")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        GaussianDiffusion(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        GaussianDiffusion(torch.tensor([0.1]))


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_p_mean_variance_uses_the_configured_variance(variance: str) -> None:
    diffusion = GaussianDiffusion(linear_betas(20), variance=variance)
    t = torch.arange(20)
    x_t = torch.linspace(-3, 3, 20 * 4).view(20, 4)
    calls = []

    def model_fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(y)
        return 0.3 * x

    out = diffusion.p_mean_variance(model_fn, x_t, t, clip_denoised=True, model_kwargs={"y": torch.ones(20)})
    assert len(calls) == 1 and set(out) == {"mean", "variance", "log_variance", "pred_x0", "eps"}
    torch.testing.assert_close(out["eps"], 0.3 * x_t)
    pred_x0 = diffusion.predict_x0_from_eps(x_t, t, 0.3 * x_t).clamp(-1, 1)
    torch.testing.assert_close(out["pred_x0"], pred_x0)
    torch.testing.assert_close(out["mean"], diffusion.q_posterior_mean_variance(pred_x0, x_t, t)[0])
    beta_tilde_1 = diffusion.posterior_variance[1]
    expected = diffusion.posterior_variance if variance == "beta_tilde" else diffusion.betas
    torch.testing.assert_close(out["variance"].flatten()[1:], expected[1:])
    # t = 0: beta_tilde's variance is 0; "beta" uses beta_tilde_1 (improved-diffusion); both logs are log beta_tilde_1.
    assert out["variance"][0].item() == (0.0 if variance == "beta_tilde" else beta_tilde_1.item())
    assert out["log_variance"][0].item() == pytest.approx(math.log(beta_tilde_1.item()), abs=1e-6)
    torch.testing.assert_close(out["log_variance"].flatten()[1:], expected[1:].log())


def test_training_losses_named_terms() -> None:
    diffusion = GaussianDiffusion(linear_betas(T))
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(5, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(5, 3, 4, 4, generator=g)
    t = torch.tensor([0, 10, 300, 600, 999])

    perfect = diffusion.training_losses(lambda x, t: noise, x0, t, noise=noise)
    assert set(perfect) == {"target_mse", "loss"} and perfect["loss"].shape == (5,)
    assert torch.equal(perfect["loss"], torch.zeros(5))

    zeros = diffusion.training_losses(lambda x, t: torch.zeros_like(x), x0, t, noise=noise)
    torch.testing.assert_close(zeros["target_mse"], (noise**2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(zeros["loss"], zeros["target_mse"])

    scaled = diffusion.training_losses(lambda x, t: torch.zeros_like(x), x0, t, noise=noise,
                                       weights={"target_mse": 2.5})
    torch.testing.assert_close(scaled["target_mse"], zeros["target_mse"])
    torch.testing.assert_close(scaled["loss"], 2.5 * zeros["target_mse"])

    # The network sees x_t = q_sample(x0, t, noise), the original t and the model kwargs.
    seen = {}

    def spy(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.update(x=x, t=t, y=y)
        return x

    diffusion.training_losses(spy, x0, t, noise=noise, model_kwargs={"y": torch.arange(5)})
    torch.testing.assert_close(seen["x"], diffusion.q_sample(x0, t, noise))
    assert torch.equal(seen["t"], t) and torch.equal(seen["y"], torch.arange(5))

    with pytest.raises(ValueError, match="target_mse"):
        diffusion.training_losses(lambda x, t: x, x0, t, noise=noise, weights={"vlb": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        diffusion.training_losses(lambda x, t: x, x0, t, noise=noise, weights={"target_mse": -1.0})


def test_training_losses_draws_noise_when_none_given() -> None:
    diffusion = GaussianDiffusion(linear_betas(T))
    torch.manual_seed(0)
    out = diffusion.training_losses(lambda x, t: torch.zeros_like(x), torch.zeros(64, 1, 8, 8), torch.full((64,), 999))
    # target_mse = mean(noise^2) over 4096 N(0, 1) draws: 1 within 5 standard errors (sqrt(2 / 4096)).
    assert abs(out["target_mse"].mean().item() - 1.0) < 5 * math.sqrt(2 / 4096)


def test_importing_genlab_diffusion_does_not_import_lightning() -> None:
    code = (
        "import sys, genlab.diffusion; "
        "assert not any(m.startswith(('lightning', 'pytorch_lightning')) for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
