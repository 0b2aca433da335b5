"""Metrics on feature vectors that torch-fidelity does not compute: density and coverage, and CMMD.

- **Density and coverage** (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models"):
  every real feature X_i gets a ball whose radius is the distance to its k-th nearest other real feature.
  density  = 1 / (k M) * sum_j #{i : Y_j in ball(X_i)}  (can exceed 1: how crowded the real balls are)
  coverage = 1 / N * #{i : some Y_j in ball(X_i)}       (the share of real neighbourhoods that samples reach)
  Unlike precision and recall, a real outlier's huge ball does not count every sample near it as real twice over.
  Distances are Euclidean and computed in float64, in blocks, so 10,000 x 10,000 pairs fit in memory.
- **CMMD** (Jayasumana et al. 2024, "Rethinking FID"): the squared MMD between L2-normalised CLIP embeddings under
  a Gaussian RBF kernel exp(-||x - y||^2 / (2 sigma^2)) with sigma = 10, times 1000. It assumes no normal
  distribution, and like the paper's reference code it uses the estimator whose within-set means include the
  diagonal, so two identical sets give exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

DENSITY_COVERAGE_K = 5  # Naeem et al.'s choice (their Sec. 4)
CMMD_SIGMA = 10.0  # the paper's kernel bandwidth
CMMD_SCALE = 1000.0  # the paper reports MMD^2 x 1000
BLOCK = 2048  # rows per block of pairwise distances


def _as_float64(x: Tensor | object) -> Tensor:
    return torch.as_tensor(x).detach().to(dtype=torch.float64, device="cpu")


def kth_neighbour_radii(features: Tensor, k: int) -> Tensor:
    """For each row, the Euclidean distance to its k-th nearest other row (the row itself, at 0, not counted)."""
    x = _as_float64(features)
    if not 0 < k < len(x):
        raise ValueError(f"k={k} needs more than k feature vectors (got {len(x)})")
    radii = []
    for start in range(0, len(x), BLOCK):
        d = torch.cdist(x[start:start + BLOCK], x)  # [b, N]
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the (k+1)-th smallest: the k-th after the row's own 0
    return torch.cat(radii)


def inside_real_balls(real: Tensor, fake: Tensor, radii: Tensor) -> Tensor:
    """bool [N_real, M_fake]: whether fake j lies in the ball of real i (distance < radius, as prdc compares)."""
    x, y = _as_float64(real), _as_float64(fake)
    rows = [torch.cdist(x[start:start + BLOCK], y) < radii[start:start + BLOCK, None]
            for start in range(0, len(x), BLOCK)]
    return torch.cat(rows)


@dataclass(frozen=True)
class DensityCoverage:
    density: float
    coverage: float


def density_coverage_from_balls(inside: Tensor, k: int = DENSITY_COVERAGE_K) -> DensityCoverage:
    """Density and coverage from the membership matrix of `inside_real_balls` (of any subset of the samples)."""
    density = inside.sum(dim=0).double().mean() / k
    coverage = inside.any(dim=1).double().mean()
    return DensityCoverage(float(density), float(coverage))


def density_coverage(real: Tensor, fake: Tensor, k: int = DENSITY_COVERAGE_K) -> DensityCoverage:
    """Naeem et al.'s density and coverage of `fake` features [M, F] against `real` features [N, F]."""
    radii = kth_neighbour_radii(real, k)
    return density_coverage_from_balls(inside_real_balls(real, fake, radii), k)


def l2_normalised(features: Tensor) -> Tensor:
    """Rows scaled to unit length, in float64 (CMMD compares CLIP embeddings by direction)."""
    x = _as_float64(features)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _rbf_kernel_mean(x: Tensor, y: Tensor, sigma: float) -> Tensor:
    """mean over all pairs of exp(-||x_i - y_j||^2 / (2 sigma^2)), accumulated block by block in float64."""
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(x), BLOCK):
        d2 = torch.cdist(x[start:start + BLOCK], y).square()
        total += torch.exp(-d2 / (2 * sigma**2)).sum()
    return total / (len(x) * len(y))


def cmmd(real: Tensor, fake: Tensor, sigma: float = CMMD_SIGMA, scale: float = CMMD_SCALE) -> float:
    """CMMD: 1000 x MMD^2 of the L2-normalised embeddings under the Gaussian RBF kernel with bandwidth sigma."""
    x, y = l2_normalised(real), l2_normalised(fake)
    mmd2 = _rbf_kernel_mean(x, x, sigma) + _rbf_kernel_mean(y, y, sigma) - 2 * _rbf_kernel_mean(x, y, sigma)
    return float(scale * mmd2)
