"""Power-function EMA (Karras et al. 2024): gamma from sigma_rel, the closed-form weights of the average, and a run
that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from conftest import TINY
from genlab.cli import main
from genlab.ema.power import gamma_to_sigma_rel, power_multi_avg_fn, sigma_rel_to_gamma
from genlab.runs.checkpoint import read_checkpoint


def test_gamma_of_the_papers_two_lengths_and_the_round_trip() -> None:
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)  # EDM2's ImageNet EMA lengths
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)
    for s in (0.01, 0.05, 0.13, 0.25):
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(s)) == pytest.approx(s, rel=1e-9)
    with pytest.raises(ValueError, match="sigma_rel must be in"):
        sigma_rel_to_gamma(0.3)


@pytest.mark.parametrize("gamma", [0.0, 6.94, 16.97])
def test_the_average_is_the_power_profile_whatever_the_run_length(gamma: float) -> None:
    """After T updates with theta_t, the average is sum_t ((t/T)^(g+1) - ((t-1)/T)^(g+1)) theta_t, for every T."""
    net = torch.nn.Linear(1, 1, bias=False).double()
    averaged = AveragedModel(net, multi_avg_fn=power_multi_avg_fn(gamma))
    thetas = torch.randn(60, dtype=torch.float64)
    for T, theta in enumerate(thetas, start=1):
        with torch.no_grad():
            net.weight.fill_(float(theta))
        averaged.update_parameters(net)
        t = torch.arange(1, T + 1, dtype=torch.float64)
        weights = (t / T) ** (gamma + 1) - ((t - 1) / T) ** (gamma + 1)
        assert float(averaged.module.weight) == pytest.approx(float((weights * thetas[:T]).sum()), rel=1e-10)
    if gamma == 0.0:  # gamma = 0 is the plain running mean
        assert float(averaged.module.weight) == pytest.approx(float(thetas.mean()), rel=1e-12)


def test_a_run_with_the_power_ema_keeps_both_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=3", "model.ema.kind=power",
                 "model.ema.sigma_rel=0.1", f"run_dir={run}"]) == 0
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if k.startswith("unet."))


def test_power_ema_refuses_a_start_step(capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "experiment=ddpm_digits", "model.ema.kind=power", "model.ema.start_step=500"]) == 2
    assert "model.ema.kind=power averages every step from step 0" in capsys.readouterr().err
