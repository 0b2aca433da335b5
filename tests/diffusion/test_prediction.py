"""Prediction targets (eps, x0, v) and loss weighting (uniform, Min-SNR-gamma) against their closed forms."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY
from genlab.cli import main
from genlab.diffusion import GaussianDiffusion, SamplerSettings, linear_betas, loss_weight, target, to_eps, to_x0
from genlab.runs.checkpoint import load_diffusion

TARGETS = ["eps", "x0", "v"]


def draws(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(64, 1, 3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 1, 3, 3, generator=g, dtype=torch.float64)
    abar = torch.rand(64, 1, 1, 1, generator=g, dtype=torch.float64) * 0.998 + 0.001  # (0.001, 0.999)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return x0, eps, abar, x_t


def test_v_is_salimans_and_hos_definition() -> None:
    x0, eps, abar, _ = draws()
    assert torch.allclose(target("v", x0, eps, abar), abar.sqrt() * eps - (1 - abar).sqrt() * x0)
    assert torch.equal(target("eps", x0, eps, abar), eps) and torch.equal(target("x0", x0, eps, abar), x0)


@pytest.mark.parametrize("prediction", TARGETS)
def test_each_target_converts_back_to_eps_and_x0(prediction: str) -> None:
    x0, eps, abar, x_t = draws(1)
    y = target(prediction, x0, eps, abar)  # a perfect network's output
    assert torch.allclose(to_eps(prediction, y, x_t, abar), eps, atol=1e-9)
    assert torch.allclose(to_x0(prediction, y, x_t, abar), x0, atol=1e-9)


@pytest.mark.parametrize("prediction", TARGETS)
@pytest.mark.parametrize("gamma", [1.0, 5.0, 100.0])
def test_min_snr_puts_min_snr_gamma_on_the_x0_mse(prediction: str, gamma: float) -> None:
    """Hang et al.'s definition: whatever the network predicts, its loss is min(SNR, gamma) |x0 - x0_hat|^2."""
    x0, eps, abar, x_t = draws(2)
    y = target(prediction, x0, eps, abar)
    y_hat = y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weighted = loss_weight(prediction, "min_snr", abar, gamma) * (y - y_hat) ** 2
    snr = abar / (1 - abar)
    definition = torch.clamp(snr, max=gamma) * (x0 - to_x0(prediction, y_hat, x_t, abar)) ** 2
    assert torch.allclose(weighted, definition, rtol=1e-9, atol=1e-12)
    if prediction == "v":  # the weight implementations get wrong (min(SNR, gamma) / SNR, as for eps) fails it
        wrong = torch.clamp(snr, max=gamma) / snr * (y - y_hat) ** 2
        assert not torch.allclose(wrong, definition, rtol=1e-3)


def test_uniform_eps_is_l_simple() -> None:
    diffusion = GaussianDiffusion(linear_betas(50))
    x0, noise = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    t = torch.randint(0, 50, (8,))
    net = lambda x, t: torch.tanh(x)  # noqa: E731
    terms = diffusion.training_losses(net, x0, t, noise=noise)
    x_t = diffusion.q_sample(x0, t, noise)
    assert torch.equal(terms["target_mse"], ((noise - torch.tanh(x_t)) ** 2).mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("prediction, weighting", [("x0", "min_snr"), ("v", "min_snr"), ("v", "uniform")])
def test_a_model_of_each_target_trains_and_samples_with_every_sampler(prediction: str, weighting: str,
                                                                     tmp_path) -> None:  # noqa: ANN001
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=3", f"diffusion.prediction={prediction}",
                 f"diffusion.loss_weighting={weighting}", f"run_dir={run}"]) == 0
    module = load_diffusion(run / "checkpoints" / "last.ckpt")
    assert module.diffusion.prediction == prediction and module.diffusion.loss_weighting == weighting
    # the loss is logged after what it measures: the MSE of this target, not an eps-MSE
    logged = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert f"train/{prediction}_mse" in logged and f"val/{prediction}_mse" in logged and "train/eps_mse" not in logged
    for name in ("ddim", "ddpm", "dpmpp_2m", "unipc", "heun", "euler"):
        images = module.sample(3, SamplerSettings().override(name=name, steps=3), seed=0)
        assert images.shape == (3, 1, 16, 16) and torch.isfinite(images).all(), name
    # DDIM, inversion and the NLL see eps: the x0 / v output converted in model_fn, at integer and fractional t
    x = torch.randn(2, 1, 16, 16)
    for t in (torch.tensor([10, 40]), torch.tensor([10.0, 40.0])):
        eps = module.model_fn(x, t)
        abar = module.denoiser.alpha_bar(t, x)
        assert torch.allclose(to_x0("eps", eps, x, abar), to_x0(prediction, module.network_output(x, t), x, abar),
                              atol=1e-4)
