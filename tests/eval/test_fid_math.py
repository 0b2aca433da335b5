"""FID from torchmetrics with genlab's reference loading, against closed forms on features with known moments."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from genlab.metrics.fid import make_fid, set_reference


class Identity(nn.Module):
    """Features = the input vectors themselves, so the moments of the data are the moments of the features."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def with_moments(n: int, mean: Tensor, std: Tensor, seed: int) -> Tensor:
    """n samples [n, d] whose sample mean and (unbiased) covariance are exactly `mean` and diag(std^2)."""
    x = torch.randn(n, len(mean), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x - x.mean(dim=0)
    whiten = torch.linalg.inv(torch.linalg.cholesky(torch.cov(x.T)))
    return (x @ whiten.T) * std + mean  # cov(x W^T) = I, then scaled and shifted


def fid_of(real: Tensor, fake: Tensor) -> float:
    metric = make_fid(Identity(real.shape[1]))
    set_reference(metric, real)
    metric.update(fake, real=False)
    return float(metric.compute())


def test_fid_matches_the_closed_form_for_diagonal_gaussians() -> None:
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0, 0.5]), torch.tensor([0.3, 1.0, -1.0, 0.0])
    sd1, sd2 = torch.tensor([1.0, 2.0, 0.5, 1.5]), torch.tensor([1.2, 1.0, 0.5, 3.0])
    real, fake = with_moments(500, mu1, sd1, seed=0), with_moments(300, mu2, sd2, seed=1)
    # ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), elementwise for diagonal covariances
    expected = float(((mu1 - mu2) ** 2).sum() + (sd1**2 + sd2**2 - 2 * sd1 * sd2).sum())
    assert fid_of(real, fake) == pytest.approx(expected, rel=1e-6)


def test_fid_matches_the_closed_form_through_a_linear_map() -> None:
    # features A x, x ~ N(mu, I): N(A mu, A A^T); against N(0, I),
    # FID = ||A mu||^2 + Tr(A A^T + I - 2 (A A^T)^(1/2))
    a = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    mu = torch.tensor([1.0, -1.0], dtype=torch.float64)
    x = with_moments(400, mu, torch.ones(2), seed=2)
    ref = with_moments(400, torch.zeros(2), torch.ones(2), seed=3)
    s = torch.diag(a @ a.T)
    expected = float(((a @ mu) ** 2).sum() + (s + 1 - 2 * s.sqrt()).sum())
    assert fid_of(ref, x @ a.T) == pytest.approx(expected, rel=1e-6)


def test_fid_of_a_set_against_itself_is_zero() -> None:
    feats = torch.randn(200, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert abs(fid_of(feats, feats)) < 1e-6


def test_reference_loading_equals_updating_with_the_real_features() -> None:
    g = torch.Generator().manual_seed(5)
    real, fake = torch.randn(100, 8, generator=g), torch.randn(60, 8, generator=g) + 0.3
    loaded = fid_of(real, fake)
    metric = make_fid(Identity(8))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    assert loaded == pytest.approx(float(metric.compute()), rel=1e-9)


def test_reference_survives_a_reset_and_an_empty_reference_adds_nothing() -> None:
    g = torch.Generator().manual_seed(6)
    real, fake = torch.randn(100, 4, generator=g), torch.randn(50, 4, generator=g)
    metric = make_fid(Identity(4))
    set_reference(metric, real)
    metric.update(fake, real=False)
    first = float(metric.compute())
    metric.reset()  # between evaluations: the fake side goes, the real side stays
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(first, rel=1e-9)
    set_reference(metric, None)  # what DDP ranks > 0 hold: zero sums
    assert int(metric.real_features_num_samples) == 0 and math.isclose(float(metric.real_features_sum.abs().sum()), 0)
