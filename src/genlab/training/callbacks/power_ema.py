"""The power-function EMA as a Lightning callback (Karras et al. 2024, sec. 3.1; the math is genlab/ema/power.py)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import WeightAveraging

from genlab.ema.power import power_multi_avg_fn, sigma_rel_to_gamma


class PowerEMAWeightAveraging(WeightAveraging):
    """Lightning's WeightAveraging with the power-function EMA, updated after every optimizer step from step 0."""

    def __init__(self, sigma_rel: float = 0.05, **kwargs: Any) -> None:
        self.sigma_rel = float(sigma_rel)
        self.gamma = sigma_rel_to_gamma(self.sigma_rel)
        super().__init__(multi_avg_fn=power_multi_avg_fn(self.gamma), **kwargs)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None
