"""Density/coverage against the `prdc` package's reference code, and CMMD against a direct float64 computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.metrics.feature_metrics import cmmd, density_coverage, kth_neighbour_radii

prdc = pytest.importorskip("prdc", reason="the test extra installs prdc, the reference code of density/coverage")


def features(seed: int, n: int, dim: int = 16, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)) + shift


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_density_and_coverage_equal_prdc(shift: float) -> None:
    real, fake = features(0, 700), features(1, 500, shift=shift)
    ref = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    ours = density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k=5)
    assert ours.density == pytest.approx(ref["density"], abs=1e-6)
    assert ours.coverage == pytest.approx(ref["coverage"], abs=1e-6)
    assert 0 < ours.coverage <= 1


def test_blocks_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blockwise distances give the same radii and metrics as one block."""
    real, fake = torch.from_numpy(features(2, 300)), torch.from_numpy(features(3, 200, shift=0.3))
    whole = density_coverage(real, fake)
    radii = kth_neighbour_radii(real, 5)
    monkeypatch.setattr("genlab.metrics.feature_metrics.BLOCK", 7)
    assert torch.allclose(kth_neighbour_radii(real, 5), radii, rtol=1e-12, atol=0)  # float64 rounding only
    blocked = density_coverage(real, fake)
    assert (blocked.density, blocked.coverage) == pytest.approx((whole.density, whole.coverage), abs=1e-12)


def test_density_and_coverage_of_the_real_set_itself() -> None:
    """Every real point lies in its own ball: coverage 1; density counts the k + 1 points in each ball on average."""
    real = torch.from_numpy(features(4, 400))
    result = density_coverage(real, real.clone())
    assert result.coverage == 1.0
    assert result.density == pytest.approx(1 + 1 / 5, rel=0.2)


def direct_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0) -> float:
    """The paper's formula written out in numpy float64: normalise, full kernel matrices, means with diagonals."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return float(np.exp(-d2 / (2 * sigma**2)).mean())

    return 1000 * (k(x, x) + k(y, y) - 2 * k(x, y))


def test_cmmd_equals_a_direct_float64_computation() -> None:
    x, y = features(5, 300, dim=32), features(6, 250, dim=32, shift=0.4)
    ours = cmmd(torch.from_numpy(x).float(), torch.from_numpy(y).float())
    assert ours == pytest.approx(direct_cmmd(x.astype(np.float32).astype(np.float64),
                                             y.astype(np.float32).astype(np.float64)), rel=1e-9)
    assert ours > 0


def test_cmmd_is_zero_for_identical_sets_and_grows_with_the_shift() -> None:
    x = torch.from_numpy(features(7, 200, dim=32))
    assert cmmd(x, x.clone()) == 0.0
    values = [cmmd(x, torch.from_numpy(features(8, 200, dim=32, shift=s))) for s in (0.0, 0.5, 1.0)]
    assert values == sorted(values)
