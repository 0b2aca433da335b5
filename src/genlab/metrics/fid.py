"""torchmetrics' FID with a genlab extractor and precomputed reference features (used during training)."""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance


def make_fid(feature: nn.Module) -> FrechetInceptionDistance:
    """FID over `feature` (a module with `num_features`, e.g. `FeatureLayer`); the real side is kept across resets.

    `antialias=False` matters only for torchmetrics' built-in Inception (`feature=2048`), whose default
    antialiased resize differs from torch-fidelity's; it is passed so that swapping the feature module for the
    built-in one keeps torch-fidelity's numbers. Keep the metric out of any LightningModule: its state_dict holds
    the extractor's weights (91 MiB for Inception), which would land in every checkpoint.
    """
    return FrechetInceptionDistance(feature=feature, reset_real_features=False, antialias=False)


def set_reference(metric: FrechetInceptionDistance, features: Tensor | None) -> None:
    """Load the real side from features [N, F]; None leaves it empty (DDP ranks > 0: the sums add up across ranks)."""
    device = metric.real_features_sum.device
    metric.reset()
    if features is None:
        metric.real_features_sum.zero_()
        metric.real_features_cov_sum.zero_()
        metric.real_features_num_samples.zero_()
        return
    f = features.double().to(device)  # [N, F]
    # The same running sums `update(real=True)` accumulates: sum f, sum f f^T, N.
    metric.real_features_sum.copy_(f.sum(dim=0))
    metric.real_features_cov_sum.copy_(f.t() @ f)
    metric.real_features_num_samples.fill_(f.shape[0])
