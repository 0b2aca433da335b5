"""A spread beside every number: mean +- std over sample seeds, or a bootstrap over one sample set.

- **Seeds** (`seeds=[0,1,2]`): every metric is computed once per sample seed; the result is the mean and the sample
  standard deviation (ddof = 1), as the tables show them. This is the spread a reader should see: it includes
  the sampler's noise and the finite sample size.
- **Bootstrap** (one seed): the samples' features are resampled with replacement (the reference set fixed) and the
  metrics that decompose over samples are recomputed: the Fréchet distance, density and coverage. Their std says
  how much the number moves with the sample set alone. The mean and 95 % percentile interval are those of the
  resampled values: for FID they lie above the full set's number, because a resample's duplicates shrink its
  covariance (measured: FID 28.36, resamples 28.9-30.6), so quote the std, or use seeds. KID carries its own std over
  subsets; precision, recall and CMMD are not bootstrapped (a resample's duplicates are each other's nearest
  neighbours, which biases recall).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import Tensor

from genlab.metrics.feature_metrics import (DENSITY_COVERAGE_K, density_coverage_from_balls, inside_real_balls,
                                            kth_neighbour_radii)

BOOTSTRAP_METRICS = ("fid", "density", "coverage")
MAX_BALL_PAIRS = 400_000_000  # real x sample pairs kept as a bool matrix for density/coverage resamples (400 MB)


def seed_spread(per_seed: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """The mean and the sample std (ddof = 1) over seeds of every metric that each seed has."""
    keys = [k for k in per_seed[0] if all(k in m for m in per_seed)]
    mean = {k: statistics.fmean(m[k] for m in per_seed) for k in keys}
    std = {k: statistics.stdev(m[k] for m in per_seed) for k in keys} if len(per_seed) > 1 else {}
    return mean, std


def _mean_cov(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance (ddof = 1, as numpy's np.cov that torch-fidelity uses) of rows, in float64."""
    mu = x.mean(dim=0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, sqrt_cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C2^1/2 C1 C2^1/2)^1/2): FID's formula, with the trace of the
    matrix square root from the eigenvalues of a symmetric matrix (the same value as tr sqrtm(C1 C2))."""
    inner = sqrt_cov2 @ cov1 @ sqrt_cov2
    tr_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    cov2_trace = (sqrt_cov2 @ sqrt_cov2).trace()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2_trace - 2 * tr_sqrt)


def bootstrap_spread(features: str, fake: Tensor, real: Tensor, resamples: int, seed: int,
                     radii: Tensor | None = None) -> dict[str, Any]:
    """Bootstrap std, mean and 95 % interval of fid_<features>, density_<features> and coverage_<features> over
    `resamples` resamples of the sample features [M, F] (the reference features [N, F] fixed); `radii`: the
    reference's k-NN radii when already computed."""
    y, x = fake.detach().double().cpu(), real.detach().double().cpu()
    mu_real, cov_real = _mean_cov(x)
    sqrt_cov_real = _psd_sqrt(cov_real)
    balls = None
    if len(x) * len(y) <= MAX_BALL_PAIRS:
        balls = inside_real_balls(x, y, kth_neighbour_radii(x, DENSITY_COVERAGE_K) if radii is None else radii)
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {f"{m}_{features}": [] for m in BOOTSTRAP_METRICS}
    for _ in range(resamples):
        index = torch.randint(len(y), (len(y),), generator=generator)
        mu, cov = _mean_cov(y[index])
        values[f"fid_{features}"].append(frechet_distance(mu, cov, mu_real, sqrt_cov_real))
        if balls is not None:
            dc = density_coverage_from_balls(balls[:, index])
            values[f"density_{features}"].append(dc.density)
            values[f"coverage_{features}"].append(dc.coverage)
    out = {}
    for name, vals in values.items():
        if len(vals) > 1:
            ordered = sorted(vals)
            low, high = ordered[int(0.025 * (len(vals) - 1))], ordered[round(0.975 * (len(vals) - 1))]
            out[name] = {"std": statistics.stdev(vals), "mean": statistics.fmean(vals), "low": low, "high": high}
    return out
