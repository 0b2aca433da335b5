"""Post-hoc EMA: the least-squares combination of power-EMA snapshots rebuilds an EMA of another length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY
from genlab.cli import main
from genlab.ema.posthoc import posthoc_weights, profile_inner
from genlab.ema.power import power_beta, sigma_rel_to_gamma
from genlab.runs.checkpoint import load_diffusion, read_checkpoint


def test_profile_inner_product_is_the_integral() -> None:
    ta, ga, tb, gb = 800.0, 6.94, 1000.0, 16.97
    tau = np.linspace(0, ta, 400001)[1:]
    pa = (ga + 1) * tau**ga / ta ** (ga + 1)
    pb = (gb + 1) * tau**gb / tb ** (gb + 1)
    assert profile_inner(ta, ga, tb, gb) == pytest.approx(np.trapezoid(pa * pb, tau), rel=1e-4)
    assert profile_inner(ta, ga, tb, gb) == pytest.approx(profile_inner(tb, gb, ta, ga))


def test_a_target_equal_to_a_snapshot_takes_that_snapshot_alone() -> None:
    g1, g2 = sigma_rel_to_gamma(0.05), sigma_rel_to_gamma(0.10)
    snaps = [(t, g) for t in (250.0, 500.0, 750.0, 1000.0) for g in (g1, g2)]
    x = posthoc_weights(snaps, 1000.0, g2)
    expected = np.zeros(len(snaps))
    expected[snaps.index((1000.0, g2))] = 1.0
    assert np.allclose(x, expected, atol=1e-6)


def power_ema(thetas: np.ndarray, gamma: float) -> list[np.ndarray]:
    avg, out = None, []
    for t, theta in enumerate(thetas, start=1):
        beta = power_beta(t, gamma)
        avg = theta.copy() if avg is None else beta * avg + (1 - beta) * theta
        out.append(avg.copy())
    return out


def test_an_intermediate_length_is_rebuilt_from_two_others() -> None:
    """Weights on a random walk: EMAs with sigma_rel 0.05 and 0.10 snapshotted every 100 of 2,000 steps rebuild the
    sigma_rel 0.07 EMA at the last step to within 1 % of how far it moved."""
    rng = np.random.default_rng(0)
    thetas = np.cumsum(rng.normal(size=(2000, 50)), axis=0)
    gammas = {s: sigma_rel_to_gamma(s) for s in (0.05, 0.10, 0.07)}
    traces = {s: power_ema(thetas, g) for s, g in gammas.items()}
    steps = list(range(100, 2001, 100))
    snaps = [(float(t), gammas[s]) for t in steps for s in (0.05, 0.10)]
    values = [traces[s][t - 1] for t in steps for s in (0.05, 0.10)]
    x = posthoc_weights(snaps, 2000.0, gammas[0.07])
    rebuilt = sum(w * v for w, v in zip(x, values))
    direct = traces[0.07][-1]
    scale = np.abs(direct - thetas[0]).mean()
    assert np.abs(rebuilt - direct).mean() < 0.01 * scale, (np.abs(rebuilt - direct).mean(), scale)
    naive = 0.5 * (traces[0.05][-1] + traces[0.10][-1])  # averaging the two is not the 0.07 EMA
    assert np.abs(naive - direct).mean() > 3 * np.abs(rebuilt - direct).mean()


def test_genlab_ema_writes_a_checkpoint_that_samples(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", "experiment=ddpm_digits", *TINY, "trainer.max_steps=6", "model.ema.posthoc=true",
                 "model.ema.posthoc_every_n_steps=2", f"run_dir={run}"]) == 0
    assert len(list((run / "ema_snapshots").glob("step*-sigma*.pt"))) == 3 * 2  # steps 2, 4, 6 x two lengths
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["ema", f"ckpt={ckpt}", "sigma_rel=0.10"]) == 0
    out = run / "checkpoints" / "posthoc-sigma0.100.ckpt"
    assert "its averaging profile is within" in capsys.readouterr().out
    rebuilt = read_checkpoint(out)
    info = rebuilt["genlab_posthoc_ema"]
    assert info["sigma_rel"] == 0.10 and info["profile_rel_error"] < 1e-6  # a snapshot length: exact
    snapshot = torch.load(run / "ema_snapshots" / "step0000006-sigma0.100.pt", weights_only=True)["params"]
    for key, value in snapshot.items():
        assert torch.allclose(rebuilt["state_dict"][key], value, atol=1e-5), key
    images = load_diffusion(out).sample(2, seed=0)
    assert images.shape == (2, 1, 16, 16) and torch.isfinite(images).all()
    assert main(["ema", f"ckpt={ckpt}", "sigma_rel=0.5"]) == 2
